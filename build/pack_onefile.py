"""Make the single executable: the launcher, then the one-folder build packed behind it.

Usage: ``python build/pack_onefile.py LAUNCHER FOLDER OUTPUT``

The layout the launcher (build/launcher/octo_launcher.c) reads: the launcher's own bytes, then
one record per file, folder or link of FOLDER (sorted, so the same build packs to the same
bytes), an end record, and a trailer: ``OCTOSFX1``, the payload's offset, and the payload's
SHA-256 in hex, which names the folder the launcher unpacks it to (docs/executable-cache.md).

Each file is one xz stream (LZMA2 at its strongest preset, after the x86 filter for machine
code): 4.7 MiB smaller than zlib level 9 over the same files (docs/executable-cache.md), and
the slower unpacking happens once per build and user. Each stream's dictionary is no larger
than its file, so unpacking a small file needs little memory.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import struct
import sys
import zlib
from pathlib import Path

MAGIC = b"OCTOSFX1"
#: kind, mode, name length, CRC-32, packed length, size (the C ``struct entry``)
ENTRY = struct.Struct("<IIIIQQ")
FILE, FOLDER, LINK, END = 0, 1, 2, 3
ELF = b"\x7fELF"
MAX_DICT = 64 << 20
MIN_DICT = 4096


def compress(data: bytes) -> bytes:
    """One xz stream of ``data`` (no xz check: the record's CRC-32 is what the launcher checks)."""
    lzma2 = {
        "id": lzma.FILTER_LZMA2,
        "preset": 9 | lzma.PRESET_EXTREME,
        "dict_size": max(MIN_DICT, min(MAX_DICT, len(data))),
    }
    filters = [{"id": lzma.FILTER_X86}, lzma2] if data.startswith(ELF) else [lzma2]
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=filters)


def records(folder: Path) -> bytes:
    """Every file, folder and link below ``folder``, each a header, its name, its data."""
    out = bytearray()
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix().encode()
        mode = path.lstat().st_mode & 0o777
        if path.is_symlink():
            target = os.readlink(path).encode()
            out += ENTRY.pack(LINK, mode, len(name), 0, len(target), len(target)) + name + target
        elif path.is_dir():
            out += ENTRY.pack(FOLDER, mode, len(name), 0, 0, 0) + name
        else:
            data = path.read_bytes()
            packed = compress(data)
            crc = zlib.crc32(data)
            out += ENTRY.pack(FILE, mode, len(name), crc, len(packed), len(data)) + name + packed
    out += ENTRY.pack(END, 0, 0, 0, 0, 0)
    return bytes(out)


def pack(launcher: Path, folder: Path, output: Path) -> str:
    """Write ``output`` and return the payload's SHA-256 (the cache key)."""
    head = launcher.read_bytes()
    payload = records(folder)
    key = hashlib.sha256(payload).hexdigest()
    trailer = MAGIC + struct.pack("<Q", len(head)) + key.encode("ascii")
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(head + payload + trailer)
    tmp.chmod(0o755)
    tmp.replace(output)
    return key


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    print("cache key:", pack(*(Path(arg) for arg in sys.argv[1:])))
