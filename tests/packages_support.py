"""Small archives for feed tests, built in memory, and a look at what the feed left on disk."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the entries' time: the same files give the same bytes whenever they are zipped (a test
#: that zips "the same package" again a second later compares equal bytes)
ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def zip_bytes(files: dict[str, bytes], *, stored: bool = False) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=ZIP_TIME), data, compress_type=method)
    return buffer.getvalue()


def parts_zip(members: Sequence[bytes]) -> bytes:
    """A zip of stored members ``lib/part-NNN.bin``: incompressible, like a package of
    already-compressed files (the delta tests change some parts between two versions)."""
    return zip_bytes({f"lib/part-{i:03}.bin": m for i, m in enumerate(members)}, stored=True)


def tar_bytes(files: dict[str, bytes], *, gz: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def archive_for(file_name: str, files: dict[str, bytes]) -> bytes:
    """An archive in the format the file name's extension says."""
    lowered = file_name.lower()
    if lowered.endswith(".zip"):
        return zip_bytes(files)
    if lowered.endswith((".tar.gz", ".tgz")):
        return tar_bytes(files, gz=True)
    return tar_bytes(files)


def upload(api: Any, file_name: str, data: bytes, **params: str) -> Any:
    return api.post("/packages", files={"file": (file_name, data)}, params=params or None)


def stored_files(data_dir: Path) -> list[str]:
    """Every file under the data dir's ``files/`` (sealed packages, temporaries, anything) but
    the appliance's own keys (``keys/``: the build-signing key made at the first start)."""
    root = data_dir / "files"
    if not root.is_dir():
        return []
    return sorted(
        name
        for path in root.rglob("*")
        if path.is_file() and not (name := str(path.relative_to(root))).startswith("keys/")
    )


# ---------------------------------------------------------------- archive bombs
#
# Made in a fraction of a second from one deflated MiB of zeros: after a full flush a deflate
# stream needs none of what came before, so the same block bytes can be repeated.

MIB = 1024 * 1024
_ZERO_MIB = bytes(MIB)


def _deflated(data: bytes, *, final: bool) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(
        zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH
    )


def _zeros_crc(mib: int, crc: int = 0) -> int:
    for _ in range(mib):
        crc = zlib.crc32(_ZERO_MIB, crc)
    return crc


def zip_bomb(mib: int, name: str = "zeros.bin") -> bytes:
    """A zip of one file of ``mib`` MiB of zeros (about 1 KiB per MiB), sizes declared."""
    data = _deflated(_ZERO_MIB, final=False) * mib + _deflated(b"", final=True)
    size = mib * MIB
    return raw_zip([(name, data, _zeros_crc(mib), size)])


def raw_zip(
    entries: list[tuple[str, bytes, int, int]], aliases: tuple[tuple[str, int], ...] = ()
) -> bytes:
    """A deflate zip from ``(name, deflated data, crc, size)``; each alias ``(name, index)``
    is one more central-directory record pointing at entry ``index``'s local header."""
    local = bytearray()
    records: list[tuple[str, bytes, int, int, int]] = []
    for name, data, crc, size in entries:
        encoded = name.encode()
        records.append((name, data, crc, size, len(local)))
        local += struct.pack(
            "<4sHHHHHIIIHH", b"PK\3\4", 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0
        )
        local += encoded + data
    for alias, index in aliases:
        _name, data, crc, size, offset = records[index]
        records.append((alias, data, crc, size, offset))
    central = bytearray()
    for name, data, crc, size, offset in records:
        encoded = name.encode()
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\1\2",
            20,
            20,
            0,
            8,
            0,
            0x21,
            crc,
            len(data),
            size,
            len(encoded),
            0,
            0,
            0,
            0,
            0o100644 << 16,
            offset,
        )
        central += encoded
    end = struct.pack(
        "<4sHHHHIIH", b"PK\5\6", 0, 0, len(records), len(records), len(central), len(local), 0
    )
    return bytes(local + central + end)


def tar_gz_bomb(mib: int, *, after_the_end: bool = False) -> bytes:
    """A tar.gz whose tar holds ``mib`` MiB of zeros: one member of that size, or (with
    ``after_the_end``) one small member and the zeros after the end-of-archive blocks."""
    small = b"ok\n"
    if after_the_end:
        info = tarfile.TarInfo("ok.txt")
        info.size = len(small)
        head = info.tobuf() + small.ljust(512, b"\0") + bytes(1024)
        tail = b""
    else:
        info = tarfile.TarInfo("zeros.bin")
        info.size = mib * MIB
        head = info.tobuf()
        tail = bytes(1024)  # the end-of-archive blocks
    deflate = (
        _deflated(head, final=False)
        + _deflated(_ZERO_MIB, final=False) * mib
        + _deflated(tail, final=True)
    )
    crc = zlib.crc32(tail, _zeros_crc(mib, zlib.crc32(head)))
    size = len(head) + mib * MIB + len(tail)
    header = b"\x1f\x8b\x08\x00\0\0\0\0\x00\xff"
    return header + deflate + struct.pack("<II", crc, size & 0xFFFFFFFF)
