"""Disk space for extraction: what a package declares it expands to, and a full disk said plainly.

Before a byte is written, :func:`require` compares the package's declared size (a zip's
central directory; a tar's member headers, which for a tar.gz means one pass through the
decompressed stream) with the free space where the release folder goes, so a package that
cannot fit is refused with nothing written. While extracting, the standard library readers
stop at each entry's declared size (``zipfile`` reads exactly ``file_size`` bytes and checks
the CRC over them, ``tarfile`` exactly ``size``), so what is written never passes the total
checked here. A disk that fills anyway (another writer, block rounding, inodes) is reported
by :func:`no_space` as "no space left on <folder>", not as a corrupt package.
"""

from __future__ import annotations

import errno
import shutil
import tarfile
import zipfile

from ..cancellation import CancelToken
from ..errors import RunnerError
from . import Canceled

#: files take whole blocks: each is counted rounded up to this
BLOCK = 4096
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_HINT = "free space on the target (or keep fewer releases: retention), then deploy again"


def format_bytes(size: int) -> str:
    """``512 bytes``, ``3.2 MiB``."""
    if size < 1024:
        return f"{size} bytes"
    amount = size / 1024
    unit = "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if amount < 1024:
            break
        amount /= 1024
        unit = bigger
    return f"{amount:.1f} {unit}"


def _blocks(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def declared_size(archive: str, fmt: str, cancel: CancelToken) -> int:
    """The bytes the package's files take once extracted, by their declared sizes (hard links
    count again: they become copies). Raises the readers' errors on a damaged archive."""
    if fmt == "zip":
        with zipfile.ZipFile(archive) as package:
            return sum(_blocks(info.file_size) for info in package.infolist())
    total = 0
    sizes: dict[str, int] = {}
    with tarfile.open(archive, mode="r:*") as package:
        while (member := package.next()) is not None:
            if cancel.cancelled:
                raise Canceled(f"{cancel.reason}: extraction stopped")
            if member.isreg():
                sizes[member.name] = _blocks(member.size)
                total += sizes[member.name]
            elif member.islnk():
                total += sizes.get(member.linkname, 0)
            package.members.clear()  # type: ignore[attr-defined]  # memory stays flat
    return total


def free_bytes(folder: str) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _free_text(folder: str) -> str:
    free = free_bytes(folder)
    return "free space unknown" if free is None else f"{format_bytes(free)} free"


def require(folder: str, needed: int) -> None:
    """Refuse, before extracting, a package that does not fit in ``folder``'s file system."""
    free = free_bytes(folder)
    if free is not None and needed > free:
        raise RunnerError(
            f"no space left on {folder} for the package: it expands to {format_bytes(needed)} "
            f"and {format_bytes(free)} is free; nothing was extracted",
            hint=_HINT,
        )


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def no_space(folder: str, entry: str | None = None) -> RunnerError:
    """The error for a disk that filled while extracting into ``folder`` (measured now, before
    the partial release folder is removed)."""
    where = f" while extracting {entry!r}" if entry else ""
    return RunnerError(
        f"no space left on {folder}{where} ({_free_text(folder)}); nothing was extracted",
        hint=_HINT,
    )
