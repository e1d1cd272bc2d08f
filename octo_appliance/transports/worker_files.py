"""The built-in worker's directory: its layout, who owns what, and files moved into it.

``<worker dir>`` (default ``<data dir>-worker``, never inside the 0700 data dir) is the
appliance's, 0711 when another account runs the runner: ``runners/`` (the runner archive,
readable), ``work/`` (per-run work dirs, each 0700 and the worker account's), ``tmp/`` (the
appliance's scratch), and the worker account's own ``cache/``, ``applications/``, ``state/``
(the deployment journal) and ``home/`` (the scripts' HOME).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from octo_appliance.comms import CallFailed, UploadSource
from octo_appliance.security.process import can_switch_users
from octo_appliance.transports.worker_account import WorkerUser


def prepare_root(root: Path, *, shared: bool) -> None:
    """The worker dir: 0700, or 0711 when another user must reach its work dirs (they are
    0700 and owned by that user, so one user's runs are not readable by another)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711 if shared else 0o700)
    work = root / "work"
    work.mkdir(exist_ok=True)
    os.chmod(work, 0o711 if shared else 0o700)


#: the worker dir's parts the worker account owns (the runner reads, writes, extracts there)
WORKER_OWNED = ("cache", "applications", "state", "home")


def prepare_package_dirs(root: Path, user: WorkerUser | None) -> None:
    """The worker dir's parts, 0700: ``cache/``, ``applications/``, ``state/`` (the
    deployment journal and its lock), ``home/`` (the scripts' HOME) and ``tmp/`` (scratch
    for uploads and deltas). With a worker user and an appliance running as root, all but
    ``tmp/`` belong to that user; ``tmp/`` stays the appliance's."""
    prepare_root(root, shared=user is not None)
    for name in (*WORKER_OWNED, "tmp"):
        path = root / name
        path.mkdir(mode=0o700, exist_ok=True)
        if user is not None and name != "tmp" and can_switch_users():
            # root's own directory entry: the worker cannot swap it for a link
            os.chown(path, user.uid, user.gid, follow_symlinks=False)


def spool(content: UploadSource, directory: Path) -> Path:
    """Copy upload content into a private scratch file in ``directory`` (same file system as
    the cache, so storing it is a rename); the caller deletes it."""
    fd, name = tempfile.mkstemp(prefix="octo-local-", suffix=".part", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, open_source(content) as source:
            shutil.copyfileobj(source, out, 1024 * 1024)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def open_source(content: UploadSource) -> BinaryIO:
    if isinstance(content, bytes):
        return io.BytesIO(content)
    if isinstance(content, str | os.PathLike):
        return Path(content).open("rb")
    return content()


def same_file(path: Path, sha256: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    except FileNotFoundError:
        return False


def install(source: Path, target: Path, root: Path) -> None:
    prepare_root(root, shared=True)
    target.parent.mkdir(exist_ok=True)
    os.chmod(target.parent, 0o755)
    partial = target.with_suffix(".partial")
    shutil.copyfile(source, partial)
    os.chmod(partial, 0o644)
    os.replace(partial, target)


def default_worker_dir(data_dir: Path) -> Path:
    """``<data dir>-worker``: beside the data dir, never in it (the data dir is 0700 and
    the worker account must reach its work dirs but nothing of the appliance's)."""
    return data_dir.parent / f"{data_dir.name}-worker"


def hand_over(path: Path, user: WorkerUser) -> None:
    """Give a file in the worker's cache to its account (the appliance runs as root).

    The cache dir is the worker's: it could swap the file for a link to a file of root's
    between the store and this chown, so the file is opened without following links,
    checked to be a plain file with one link, and changed through its descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise CallFailed(
                "cache_tampered",
                f"the worker's cached file {path.name} was replaced while being stored",
                hint="see docs/security.md, 'The built-in worker'",
            )
        os.fchown(fd, user.uid, user.gid)
    finally:
        os.close(fd)


__all__ = [
    "WORKER_OWNED",
    "default_worker_dir",
    "hand_over",
    "install",
    "prepare_package_dirs",
    "prepare_root",
    "same_file",
    "spool",
]
