"""Extract a package (zip, tar, tar.gz/tgz) into a fresh release folder, refusing anything
that could write outside it.

Refused, naming the entry: absolute paths (``/x``, ``C:/x``), ``..`` segments, device files
and fifos, symbolic links whose target is absolute or resolves outside the folder (also
through other links), hard links to anything but a file extracted before, and entries that
lie under a link. The work happens in a temporary folder beside the destination, renamed to
it at the end and removed on any failure, so a failed extraction leaves nothing behind.

A package that does not fit the free space is refused before anything is written, and a
disk that fills anyway says "no space left on <folder>" (``space``).

Files keep their permission bits (without setuid, setgid and sticky; the owner can always
read and write), hard links become copies, and links are created after every file and
folder, so no file is ever written through a link. Timestamps are not restored.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO

from ..cancellation import CancelToken
from ..errors import RunnerError
from ..protocol import EventWriter
from . import Canceled, space
from .files import COPY_BUFFER, describe_os_error, is_within

FORMATS = ("zip", "tar", "tar.gz", "tgz")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_ARCHIVE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OSError,
)
_UNSAFE_HINT = "rebuild the package with relative paths that stay inside its root"


class UnsafeEntry(RunnerError):
    """An archive entry that would escape the release folder or is not a file, folder or
    link; nothing of the package is installed."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(
            f"the package holds an unsafe entry {name!r}: {reason}; nothing was extracted",
            hint=_UNSAFE_HINT,
        )
        self.entry = name


@dataclass
class Counts:
    files: int = 0
    folders: int = 0
    links: int = 0

    @property
    def entries(self) -> int:
        return self.files + self.folders + self.links


def extract(
    archive: str, fmt: str, destination: str, events: EventWriter, cancel: CancelToken
) -> Counts:
    """Extract ``archive`` (``fmt`` in ``FORMATS``) to ``destination``, which must not exist."""
    parent = os.path.dirname(destination)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise _cannot_create(parent, exc) from exc
    try:
        needed = space.declared_size(archive, fmt, cancel)
    except _ARCHIVE_ERRORS as exc:
        raise _corrupt("zip" if fmt == "zip" else "tar", exc) from exc
    space.require(parent, needed)
    try:
        temp = tempfile.mkdtemp(prefix=f".{os.path.basename(destination)}.partial-", dir=parent)
    except OSError as exc:
        raise _cannot_create(parent, exc) from exc
    try:
        os.chmod(temp, 0o755)
        extractor = _Extractor(temp, parent, cancel)
        if fmt == "zip":
            extractor.zip(archive)
        else:
            extractor.tar(archive)
        extractor.finish()
        if os.path.lexists(destination):
            raise RunnerError(f"the release folder {destination} appeared meanwhile")
        os.rename(temp, destination)
    except OSError as exc:
        error = space.no_space(parent) if space.is_disk_full(exc) else None
        shutil.rmtree(temp, ignore_errors=True)
        if error is None:
            raise
        raise error from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    counts = extractor.counts
    events.log(
        "info",
        f"Extracted {counts.entries} entries ({counts.files} files, {counts.folders} folders, "
        f"{counts.links} links) to {destination}",
    )
    return counts


def clean_name(raw: str, *, windows_separators: bool = False) -> str | None:
    """The entry's path as ``a/b/c`` (``None`` for the root itself); ``UnsafeEntry`` if it is
    absolute or climbs with ``..``."""
    if "\x00" in raw:
        raise UnsafeEntry(raw, "its name holds a NUL character")
    name = raw.replace("\\", "/") if windows_separators else raw
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise UnsafeEntry(raw, "it is an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeEntry(raw, "its path climbs out with '..'")
    return "/".join(parts) or None


class _Extractor:
    def __init__(self, root: str, parent: str, cancel: CancelToken) -> None:
        self.root = root
        self.parent = parent
        self.cancel = cancel
        self.counts = Counts()
        self.links: list[tuple[str, str, str]] = []  # (entry, cleaned name, target)

    # ---- archive formats ---------------------------------------------------------------

    def zip(self, archive: str) -> None:
        try:
            package = zipfile.ZipFile(archive)
        except _ARCHIVE_ERRORS as exc:
            raise _corrupt("zip", exc) from exc
        with package:
            for info in package.infolist():
                self._check_cancel()
                mode = info.external_attr >> 16
                name = clean_name(info.filename, windows_separators=True)
                kind = stat.S_IFMT(mode)
                try:
                    if info.is_dir() or kind == stat.S_IFDIR:
                        self._folder(name)
                    elif kind == stat.S_IFLNK:
                        target = package.read(info).decode("utf-8", "surrogateescape")
                        self._link(info.filename, name, target)
                    elif kind in (0, stat.S_IFREG):
                        with package.open(info) as source:
                            self._file(info.filename, name, source, mode or 0o644)
                    else:
                        raise UnsafeEntry(info.filename, "it is a device file, fifo or socket")
                except (UnsafeEntry, Canceled):
                    raise
                except _ARCHIVE_ERRORS as exc:
                    raise self._failed(info.filename, exc) from exc

    def tar(self, archive: str) -> None:
        try:
            package = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed below
        except _ARCHIVE_ERRORS as exc:
            raise _corrupt("tar", exc) from exc
        current = "(the first entry)"
        try:
            with package:
                for member in package:
                    current = member.name
                    self._check_cancel()
                    self._tar_member(package, member)
        except (UnsafeEntry, Canceled):
            raise
        except _ARCHIVE_ERRORS as exc:
            raise self._failed(current, exc) from exc

    def _tar_member(self, package: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = clean_name(member.name)
        if member.isdir():
            self._folder(name)
        elif member.issym():
            self._link(member.name, name, member.linkname)
        elif member.islnk():
            self._hardlink(member.name, name, member.linkname)
        elif member.isreg():
            source = package.extractfile(member)
            if source is None:  # pragma: no cover - isreg() members always have data
                raise UnsafeEntry(member.name, "it has no data")
            with source:
                self._file(member.name, name, source, member.mode)
        elif member.isdev():
            raise UnsafeEntry(member.name, "it is a device file or fifo")
        else:
            raise UnsafeEntry(member.name, f"it has an unsupported entry type {member.type!r}")

    # ---- entries -------------------------------------------------------------------------

    def _failed(self, entry: str, exc: BaseException) -> RunnerError:
        """A full disk says so (naming the folder), anything else is a damaged entry."""
        if space.is_disk_full(exc):
            return space.no_space(self.parent, entry)
        return _entry_failed(entry, exc)

    def _check_cancel(self) -> None:
        if self.cancel.cancelled:
            raise Canceled(f"{self.cancel.reason}: extraction stopped")

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def _parent(self, entry: str, name: str) -> None:
        """Create the folders above ``name``; none of them may be a link or a file."""
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            path = self._path("/".join(parts[:depth]))
            if os.path.islink(path):
                raise UnsafeEntry(entry, f"it lies under the link {'/'.join(parts[:depth])!r}")
            if not os.path.isdir(path):
                if os.path.lexists(path):
                    raise UnsafeEntry(entry, "a file of the same package is in its path")
                os.mkdir(path, 0o755)
                self.counts.folders += 1

    def _folder(self, name: str | None) -> None:
        if name is None:
            return
        self._parent(name, name)
        path = self._path(name)
        if os.path.isdir(path) and not os.path.islink(path):
            return
        if os.path.lexists(path):
            raise UnsafeEntry(name, "it is both a file and a folder in the package")
        os.mkdir(path, 0o755)
        self.counts.folders += 1

    def _replaceable(self, entry: str, name: str) -> str:
        self._parent(entry, name)
        path = self._path(name)
        if os.path.isdir(path) and not os.path.islink(path):
            raise UnsafeEntry(entry, "it is both a folder and a file in the package")
        return path

    def _file(self, entry: str, name: str | None, source: IO[bytes], mode: int) -> None:
        if name is None:
            raise UnsafeEntry(entry, "a file cannot be the package root")
        path = self._replaceable(entry, name)
        if os.path.lexists(path):
            os.unlink(path)  # a later entry of the same name wins, as with tar
        else:
            self.counts.files += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, COPY_BUFFER)
        os.chmod(path, (mode & 0o777) | 0o600)

    def _hardlink(self, entry: str, name: str | None, target: str) -> None:
        """A hard link becomes a copy of a file the package holds before it."""
        try:
            cleaned = clean_name(target)
        except UnsafeEntry as exc:
            reason = exc.message.split(": ", 1)[1].split(";")[0]
            raise UnsafeEntry(entry, f"its hard link target {target!r}: {reason}") from None
        source = self._path(cleaned) if cleaned else self.root
        if name is None or cleaned is None or os.path.islink(source):
            raise UnsafeEntry(entry, f"its hard link target {target!r} is not a file")
        if not os.path.isfile(source):
            raise UnsafeEntry(entry, f"its hard link target {target!r} is not in the package")
        with open(source, "rb") as data:
            self._file(entry, name, data, os.stat(source).st_mode)

    def _link(self, entry: str, name: str | None, target: str) -> None:
        """Check a symbolic link's target now; create the link in ``finish``."""
        if name is None:
            raise UnsafeEntry(entry, "a link cannot be the package root")
        if not target or "\x00" in target:
            raise UnsafeEntry(entry, "it is a link without a valid target")
        if target.startswith("/"):
            raise UnsafeEntry(entry, f"it links to the absolute path {target!r}")
        parent = os.path.dirname(name)
        lexical = os.path.normpath(os.path.join(parent, target))
        if lexical == ".." or lexical.startswith("../"):
            raise UnsafeEntry(entry, f"it links to {target!r}, outside the package")
        self.links.append((entry, name, target))

    def finish(self) -> None:
        """Create the links, then check where each one really leads (links through links)."""
        for entry, name, target in self.links:
            path = self._replaceable(entry, name)
            if os.path.lexists(path):
                os.unlink(path)
            else:
                self.counts.links += 1
            os.symlink(target, path)
        root = os.path.realpath(self.root)
        for entry, name, target in self.links:
            if not is_within(os.path.realpath(self._path(name)), root):
                raise UnsafeEntry(entry, f"it links to {target!r}, which leads outside the package")


def _cannot_create(parent: str, exc: OSError) -> RunnerError:
    if space.is_disk_full(exc):
        return space.no_space(parent)
    return RunnerError(
        f"cannot create the release folder: {describe_os_error(exc)}",
        hint="check that the agent's user may write to the applications folder",
    )


def _corrupt(kind: str, exc: BaseException) -> RunnerError:
    return RunnerError(
        f"the package is not a readable {kind} archive: {_reason(exc)}",
        hint="check the package's format, or upload it again",
    )


def _entry_failed(entry: str, exc: BaseException) -> RunnerError:
    return RunnerError(
        f"cannot extract the package entry {entry!r}: {_reason(exc)}; nothing was extracted",
        hint="the archive may be truncated or corrupt: upload the package again",
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return describe_os_error(exc)
    return str(exc) or type(exc).__name__
