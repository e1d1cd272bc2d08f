"""Durable file replacement: readers see the old or the new content, never half a file.

Temp file in the same directory (created with its final mode, so a secret is never briefly
world-readable), fsync, rename over the target, fsync the directory. Used for the master key,
the TLS key and the agent's config: a crash at any point leaves a usable file.

Files made once and shared by several processes or nodes (the master key, the signing key, the
generated certificate in ``shared_dir``) are created with :func:`create_once` instead: a hard
link publishes the finished temp file only if nothing is at the path yet, so when two nodes
start at once on an empty directory the first writer wins and the other reads what it wrote
(a rename would let the second overwrite the first, leaving the first node with a key that is
no longer on disk). Hard links are atomic and exclusive on local file systems and on NFS.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from octo_appliance.exceptions import ConfigError


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    tmp = _durable_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_once(path: Path, data: bytes, *, mode: int = 0o600) -> bytes:
    """Create ``path`` holding ``data`` unless it exists; return what ``path`` holds after.

    That is ``data`` when this call created the file, else the content of whoever created it
    first (never half of it: the file appears complete or not at all).
    """
    tmp = _durable_temp(path, data, mode)
    if publish_once(tmp, path):
        return data
    return path.read_bytes()


def publish_once(tmp: Path, path: Path) -> bool:
    """Move the complete file ``tmp`` to ``path`` unless ``path`` exists (then drop ``tmp``).

    True when ``tmp`` became ``path``. ``os.link`` fails with ``FileExistsError`` when the
    target exists, so of several processes racing, exactly one wins.
    """
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as exc:  # a file system without hard links (some SMB shares)
        raise ConfigError(
            f"cannot create {path}: the file system refuses a hard link ({exc.strerror})",
            hint="put shared_dir (and master_key_file) on a file system with hard links: a "
            "local disk, NFS, CephFS, EFS (docs/ha.md)",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def _durable_temp(path: Path, data: bytes, mode: int) -> Path:
    """``data`` in a synced temp file beside ``path``, created with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort where directories can't be opened)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
