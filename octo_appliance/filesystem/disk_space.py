"""Recognise "the disk is full" wherever it surfaces, and say it as a 507 an operator can act on.

A full disk shows up as ``OSError`` ``ENOSPC``/``EDQUOT`` from file writes, as SQLite's
``SQLITE_FULL`` ("database or disk is full") and as PostgreSQL's ``disk_full`` (SQLSTATE
53100), each possibly wrapped by peewee. All of them become one
:class:`~octo_appliance.exceptions.InsufficientStorage` naming where space is missing and how
much is free, so the operator knows what to free; nothing about the request was wrong.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from octo_runner.conventions.space import format_bytes as format_size

from octo_appliance.exceptions import InsufficientStorage

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13
_POSTGRES_DISK_FULL = "53100"
_HINT = "free space on that disk (or move the data dir to a larger one), then try again"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: causes, contexts and peewee's ``orig`` (the driver's error,
    which peewee also re-raises from inside an ``except``)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is x for x in seen) or len(seen) > 8:
            continue
        seen.append(item)
        todo += [getattr(item, "orig", None), item.__cause__, item.__context__]
    return seen


def disk_full_kind(exc: BaseException) -> str | None:
    """``"disk"`` for a full local disk, ``"database server"`` for PostgreSQL's, else None."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno in _FULL_ERRNOS:
            return "disk"
        if getattr(item, "sqlite_errorcode", None) == _SQLITE_FULL:
            return "disk"
        if getattr(item, "sqlstate", None) == _POSTGRES_DISK_FULL:
            return "database server"
    return None


def free_bytes(path: Path) -> int | None:
    """Free bytes (for this user) on the file system holding ``path`` or its nearest parent."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def format_bytes(size: int | None) -> str:
    """``512 bytes``, ``3.2 MiB``, ``1.0 GiB`` (the runner's wording, so a target and the
    appliance say sizes alike)."""
    return "an unknown amount" if size is None else format_size(size)


def data_dir_full(data_dir: Path, action: str) -> InsufficientStorage:
    """The 507 for a full data dir disk while doing ``action`` ("storing the package")."""
    free = format_bytes(free_bytes(data_dir))
    return InsufficientStorage(
        f"no space left on the disk of the data dir {data_dir} while {action} ({free} free)",
        hint=_HINT,
    )


def storage_error(exc: BaseException, data_dir: Path, action: str) -> InsufficientStorage | None:
    """The 507 for ``exc`` if it means a full disk, else None."""
    kind = disk_full_kind(exc)
    if kind is None:
        return None
    if kind == "database server":
        return InsufficientStorage(
            f"the PostgreSQL server has no disk space left while {action}",
            hint="free space on the database server's disk, then try again",
        )
    return data_dir_full(data_dir, action)
