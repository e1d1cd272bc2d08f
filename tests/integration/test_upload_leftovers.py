"""A crashed upload's partial files are removed when the appliance next starts (before, they
waited six hours for a later upload to sweep them)."""

from __future__ import annotations

import secrets
from pathlib import Path

from octo_appliance.feed.sealed_files import incoming_dir
from tests.serve_process import ServeProcess


def test_partial_uploads_left_by_a_crash_are_removed_at_the_next_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServeProcess(data):
        pass  # the first start creates the data dir
    incoming = incoming_dir(data)
    incoming.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    left = [incoming / f"{token}.sealed", incoming / f".{token}.sealed.1a2b3c4d.sealing"]
    for path in left:
        path.write_bytes(secrets.token_bytes(4096))  # written just now, as by a crash
    with ServeProcess(data) as server:
        assert [path for path in left if path.exists()] == []
        assert f"removed 2 partial upload(s) from {incoming}" in server.output()
