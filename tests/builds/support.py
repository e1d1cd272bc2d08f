"""A stand-in agent build where a development install caches the build of today's sources, for
tests of serving and signing that need no PyInstaller run (the real one: tests/binary)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from octo_appliance.builds.agent import INFO_NAME, LINUX_X86_64, cache_entry

STAND_IN = b"#!/bin/sh\necho a stand-in for the frozen octo-agent\n"


def put_stand_in(cache_dir: Path, version: str = "0.1.0", data: bytes = STAND_IN) -> Path:
    """Cache ``data`` (an executable; default :data:`STAND_IN`) as the build of today's
    sources in ``cache_dir`` (returned)."""
    entry = cache_entry(cache_dir, None)
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "octo-agent").write_bytes(data)
    (entry / "octo-agent").chmod(0o755)
    info = {
        "version": version,
        "platform": LINUX_X86_64,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (entry / INFO_NAME).write_text(json.dumps(info), encoding="utf-8")
    return cache_dir
