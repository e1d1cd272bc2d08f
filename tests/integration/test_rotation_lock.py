"""``master-key rotate`` refuses while a server uses the data (issue 17.6), on real processes.

A running ``serve`` holds ``<data dir>/appliance.lock`` shared (and on PostgreSQL an advisory
lock shared); a rotation needs both exclusive. A rotation's leftover ``.rekeying`` copies go
when the rotation is resumed or when a server starts without finishing it (abandoned).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from octo_appliance.db.in_use import hold_exclusive
from octo_appliance.exceptions import InUseError
from octo_appliance.vault import KeyRing, MasterKey
from octo_appliance.vault.keys import read_keyring_file, write_keyring
from tests.child_process import run_module
from tests.serve_process import ServeFailed, ServeProcess

pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("octo_appliance", *args)


def test_rotate_is_refused_while_serve_runs_and_works_after_it_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ServeProcess(data_dir) as server:
        assert server.key_file is not None
        before = server.key_file.read_bytes()
        refused = _cli("master-key", "rotate", "--data-dir", str(data_dir))
        assert refused.returncode == 1, refused.stderr
        assert f"a server is running on the data dir {data_dir}" in refused.stderr
        assert "hint: stop the server" in refused.stderr
        assert "Traceback" not in refused.stderr and not refused.stdout
        assert server.key_file.read_bytes() == before
        with server.http2_client() as client:
            assert client.get("/api/v1/health").status_code == 200
    done = _cli("master-key", "rotate", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert read_keyring_file(server.key_file).current.to_text() not in before.decode()


@pytest.mark.postgres
def test_rotate_is_refused_from_another_node_while_a_server_uses_the_database(
    tmp_path: Path, pg_url: str
) -> None:
    from tests.conftest import drop_pg_schema

    drop_pg_schema(pg_url)
    data_dir = tmp_path / "node1"
    with ServeProcess(data_dir, database=pg_url) as server:
        assert server.key_file is not None
        # a second node: its own data dir (no file lock to see), the same database and key
        other = tmp_path / "node2"
        other.mkdir()
        (other / "config.toml").write_text(f'master_key_file = "{server.key_file}"\n')
        refused = _cli("master-key", "rotate", "--data-dir", str(other), "--database", pg_url)
        assert refused.returncode == 1, refused.stderr
        assert "or its PostgreSQL database (on any node)" in refused.stderr
        assert "hint: stop the server (every node" in refused.stderr
        assert not read_keyring_file(server.key_file).rotating
    done = _cli("master-key", "rotate", "--data-dir", str(other), "--database", pg_url)
    assert done.returncode == 0, done.stderr


def test_serve_does_not_start_while_a_rotation_holds_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with hold_exclusive(data_dir, None, command="master-key rotate"):
        with pytest.raises(ServeFailed, match="a master-key rotation or a restore is working"):
            ServeProcess(data_dir).start()
        with pytest.raises(InUseError):  # nor a second rotation
            hold_exclusive(data_dir, None, command="master-key rotate")


def test_an_abandoned_rotation_leaves_no_rekeying_copy_after_the_next_start(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    with ServeProcess(data_dir) as server:
        key_file = server.key_file
    assert key_file is not None
    ring = read_keyring_file(key_file)
    # a rotation killed mid-way: its new key written, one file half rewrapped
    write_keyring(key_file, KeyRing(MasterKey.generate(), (ring.current,)))
    stale = data_dir / "files" / "packages" / ".app.1.0.0.zip.0badc0de.rekeying"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a rewrapped file")
    with ServeProcess(data_dir) as server:
        assert not stale.exists()
        with server.http2_client() as client:
            assert client.get("/api/v1/health").status_code == 200
    assert "removed 1 temporary file(s) of an interrupted master-key rotation" in server.stderr
    # resumed: the rotation clears its own leftovers before it starts
    stale.write_bytes(b"half a rewrapped file")
    done = _cli("master-key", "rotate", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("resuming an unfinished rotation\n")
    assert not stale.exists()
    assert not read_keyring_file(key_file).rotating
