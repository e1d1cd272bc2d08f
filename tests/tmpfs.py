"""A small tmpfs a test mounts itself, to run real code against a real full disk.

Mounting needs root (or CAP_SYS_ADMIN); elsewhere the test is skipped saying so.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``30m``) at ``path`` for the block; unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    spec = ",".join([f"size={size}", "mode=0755", *options])
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", spec, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = mounted.stderr.strip() or f"exit code {mounted.returncode}"
        pytest.skip(f"mounting a tmpfs is not permitted here (needs root): {reason}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write zeros to ``directory/name`` until its disk is full; returns the file."""
    path = directory / name
    piece = b"\0" * (256 * 1024)
    with open(path, "wb", buffering=0) as out:
        try:
            while True:
                out.write(piece)  # a short write first, then ENOSPC
        except OSError:
            pass
    return path
