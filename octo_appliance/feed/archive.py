"""Is an uploaded package a readable archive? Checked from the sealed file before it is kept.

What is checked, per format (the contents are never extracted or written anywhere):

- ``zip``: the end-of-central-directory record and the whole central directory parse, the
  archive lists at least one entry, no two entries share a path (readers disagree on which
  one wins) and every entry's local header is where the directory says, agrees with it on
  the sizes, and has its data inside the file without overlapping another entry's (the
  trick of "overlapping" zip bombs). The declared sizes must fit the expansion limits
  (``limits``): a bomb is refused without inflating a byte.
- ``tar``: every member header parses (checksums included), there is at least one member,
  every member's data lies inside the file and the archive ends with its end-of-archive
  (zero) block, so a tar cut short fails even when cut exactly between two members. Pax and
  long-name headers over 1 MiB are refused (``tarfile`` reads them into memory).
- ``tar.gz``: as ``tar``, on the decompressed stream, which is then read to its end so the
  gzip CRC and length are verified too. Decompression stops as soon as the expansion limits
  are passed, before the member whose declared size would pass them is inflated.

An empty file, random bytes, a truncated or mislabelled archive (a zip named ``.tar.gz``) are
refused with a :class:`ValidationFailed` naming the problem. Reading goes through a seekable
plaintext reader, so memory stays at a chunk or two (plus a zip's central directory).
"""

from __future__ import annotations

import gzip
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Self

from octo_appliance.exceptions import ValidationFailed
from octo_appliance.feed.limits import ArchiveLimits

# signature, flags, compressed size, size, name length, extra length
_LOCAL_HEADER = struct.Struct("<4s2xH10xIIHH")
_DATA_DESCRIPTOR_FLAG = 0x08
_ZIP64_MARK = 0xFFFFFFFF
#: pax and GNU long-name headers are read into memory by ``tarfile``: cap them
_MAX_META_BYTES = 1024 * 1024
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_LOCAL_SIGNATURE = b"PK\x03\x04"
_DRAIN_BYTES = 1024 * 1024
#: errors of the standard library readers that mean "not a (complete) archive"
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    EOFError,
    OSError,  # gzip.BadGzipFile, short reads
    zlib.error,
    ValueError,
    struct.error,
    NotImplementedError,
)


# tarfile's header errors (not in the type stubs): a zero block, and a missing or short header
_EOF_HEADER: type[Exception] = tarfile.EOFHeaderError  # type: ignore[attr-defined]
_SHORT_HEADER: tuple[type[Exception], ...] = (
    tarfile.EmptyHeaderError,  # type: ignore[attr-defined]
    tarfile.TruncatedHeaderError,  # type: ignore[attr-defined]
)


@dataclass(frozen=True)
class ArchiveSummary:
    format: str
    entries: int


def invalid_archive(message: str) -> ValidationFailed:
    return ValidationFailed(
        message,
        details=[{"field": "file", "message": message}],
        hint="upload a complete zip or tar archive whose extension matches its format",
    )


def check_archive(
    stream: IO[bytes], fmt: str, size: int, limits: ArchiveLimits | None = None
) -> ArchiveSummary:
    """Check the archive in the seekable ``stream`` of ``size`` bytes (see the module doc);
    ``limits`` defaults to the settings' defaults."""
    if size == 0:
        raise invalid_archive("the uploaded file is empty")
    label = {"zip": "zip", "tar": "tar", "tar.gz": "gzip-compressed tar"}[fmt]
    bounds = _Bounds(limits or ArchiveLimits.from_settings(), label, size)
    try:
        if fmt == "zip":
            entries = _check_zip(stream, bounds)
        elif fmt == "tar":
            entries = _check_tar(stream, bounds)
        else:
            entries = _check_tar_gz(stream, bounds)
    except ValidationFailed:
        raise
    except _READ_ERRORS as exc:
        raise invalid_archive(
            f"the uploaded file is not a readable {label} archive ({_reason(exc)})"
        ) from None
    if entries == 0:
        raise invalid_archive(f"the uploaded {label} archive holds no files")
    return ArchiveSummary(fmt, entries)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


@dataclass(frozen=True)
class _Bounds:
    """The expansion cap of one archive, and its refusal."""

    limits: ArchiveLimits
    label: str
    size: int

    @property
    def cap(self) -> int:
        return self.limits.cap(self.size)

    def check(self, expanded: int, *, exact: bool) -> None:
        if expanded > self.cap:
            raise self.limits.refuse(self.label, self.size, expanded, exact=exact)


def _entry_path(name: str) -> str:
    """The path an extractor writes ``name`` to (``\\`` is a separator, ``.`` and empty
    segments vanish), so ``a/b``, ``./a//b`` and ``a\\b`` are one path."""
    return "/".join(part for part in name.replace("\\", "/").split("/") if part not in ("", "."))


def _check_zip(stream: IO[bytes], bounds: _Bounds) -> int:
    with zipfile.ZipFile(stream) as archive:
        infos = archive.infolist()
    seen: set[str] = set()
    for info in infos:
        path = _entry_path(info.filename)
        if path in seen:
            raise invalid_archive(
                f"the zip holds the entry '{path}' more than once (which one an extractor keeps "
                "differs between tools)"
            )
        seen.add(path)
    bounds.check(sum(info.file_size for info in infos), exact=True)
    data_end = 0
    previous = ""
    # local headers in file order, so reads move forward through the file
    for info in sorted(infos, key=lambda item: item.header_offset):
        if info.header_offset < data_end:
            raise zipfile.BadZipFile(
                f"the entries '{previous}' and '{info.filename}' overlap (an archive bomb trick)"
            )
        stream.seek(info.header_offset)
        raw = stream.read(_LOCAL_HEADER.size)
        if len(raw) < _LOCAL_HEADER.size:
            raise zipfile.BadZipFile(f"the local header of '{info.filename}' is cut short")
        signature, flags, packed, unpacked, name_length, extra_length = _LOCAL_HEADER.unpack(raw)
        if signature != _LOCAL_SIGNATURE:
            raise zipfile.BadZipFile(f"no local header where '{info.filename}' should start")
        sized = not flags & _DATA_DESCRIPTOR_FLAG and _ZIP64_MARK not in (packed, unpacked)
        if sized and (packed, unpacked) != (info.compress_size, info.file_size):
            raise zipfile.BadZipFile(
                f"the sizes of '{info.filename}' in its local header differ from the "
                "central directory's"
            )
        data_end = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        data_end += info.compress_size
        if data_end > bounds.size:
            raise zipfile.BadZipFile(f"the data of '{info.filename}' runs past the end")
        previous = info.filename
    return len(infos)


class _StrictTarInfo(tarfile.TarInfo):
    """Header parsing that refuses what ``tarfile`` silently treats as the end of the archive.

    ``tarfile`` stops without an error at a garbled, cut or missing header after the first
    member; only a zero block is a real end of archive, so everything else is an error here.
    """

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        try:
            info = super().frombuf(buf, encoding, errors)
        except _EOF_HEADER:
            raise
        except _SHORT_HEADER:
            raise tarfile.ReadError(
                "a header is missing or cut short: the archive is truncated, or not a tar"
            ) from None
        except tarfile.HeaderError as exc:
            raise tarfile.ReadError(f"a member header is damaged: {exc}") from None
        if info.type in _META_TYPES and info.size > _MAX_META_BYTES:
            raise tarfile.ReadError(
                f"a pax or long-name header holds {info.size} bytes (at most {_MAX_META_BYTES})"
            )
        return info


def _walk_tar(stream: IO[bytes], bounds: _Bounds) -> tuple[int, int]:
    """``(members, end of the last member's data)``; keeps no member list in memory. Each
    member's declared end is checked against the cap before its data is skipped over, which
    for a tar.gz is what inflates it."""
    members = 0
    data_end = 0
    with tarfile.open(fileobj=stream, mode="r:", tarinfo=_StrictTarInfo) as archive:
        while (member := archive.next()) is not None:
            members += 1
            bounds.check(member.offset_data + member.size, exact=False)
            if member.isreg():
                data_end = max(data_end, member.offset_data + member.size)
            archive.members.clear()  # type: ignore[attr-defined]  # a package with a million files stays small
    return members, data_end


def _check_tar(stream: IO[bytes], bounds: _Bounds) -> int:
    members, data_end = _walk_tar(stream, bounds)
    if data_end > bounds.size:
        raise tarfile.ReadError("the last member's data is cut short")
    return members


def _check_tar_gz(stream: IO[bytes], bounds: _Bounds) -> int:
    with gzip.GzipFile(fileobj=stream, mode="rb") as unpacked:
        members, data_end = _walk_tar(unpacked, bounds)  # type: ignore[arg-type]
        # to the end: CRC, length, no truncation; and no bomb hidden after the tar's end
        while unpacked.read(_DRAIN_BYTES):
            bounds.check(unpacked.tell(), exact=False)
        total = unpacked.tell()
    if data_end > total:
        raise tarfile.ReadError("the last member's data is cut short")
    return members


__all__ = ["ArchiveSummary", "check_archive", "invalid_archive"]
