"""Build real package archives (zip, tar, tar.gz) from entry lists, for the convention tests.

An entry is ``(name, kind, payload, mode)``: kind ``file`` (payload: text or bytes), ``dir``,
``symlink`` and ``hardlink`` (payload: the target), ``fifo`` or ``chr`` (no payload).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

from octo_runner.masking import Masker
from octo_runner.protocol import EventWriter

Payload = str | bytes | None
Entry = tuple[str, str, Payload, int]


def file(name: str, content: str | bytes = "", mode: int = 0o644) -> Entry:
    return (name, "file", content, mode)


def folder(name: str) -> Entry:
    return (name, "dir", None, 0o755)


def symlink(name: str, target: str) -> Entry:
    return (name, "symlink", target, 0o777)


def hardlink(name: str, target: str) -> Entry:
    return (name, "hardlink", target, 0o644)


def special(name: str, kind: str) -> Entry:
    return (name, kind, None, 0o644)


def _bytes(payload: Payload) -> bytes:
    if payload is None:
        return b""
    return payload.encode() if isinstance(payload, str) else payload


_ZIP_TYPES = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "chr": stat.S_IFCHR,
}
_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chr": tarfile.CHRTYPE,
}


def build(entries: list[Entry], fmt: str) -> bytes:
    """The archive bytes of ``entries`` in ``fmt`` (zip, tar, tar.gz, tgz)."""
    buffer = io.BytesIO()
    if fmt == "zip":
        with (
            warnings.catch_warnings(),
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        ):
            warnings.simplefilter("ignore")  # duplicate names are a case under test
            for name, kind, payload, mode in entries:
                if kind == "hardlink":
                    raise ValueError("zip has no hard links")
                info = zipfile.ZipInfo(name + ("/" if kind == "dir" else ""))
                info.external_attr = (_ZIP_TYPES[kind] | mode) << 16
                archive.writestr(info, _bytes(payload))
        return buffer.getvalue()
    with tarfile.open(fileobj=buffer, mode="w:gz" if fmt in ("tar.gz", "tgz") else "w") as tar:
        for name, kind, payload, mode in entries:
            member = tarfile.TarInfo(name)
            member.type = _TAR_TYPES[kind]
            member.mode = mode
            data = b""
            if kind in ("symlink", "hardlink"):
                member.linkname = str(payload)
            elif kind == "file":
                data = _bytes(payload)
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if kind == "file" else None)
    return buffer.getvalue()


def store(cache_dir: Path, data: bytes) -> str:
    """Put ``data`` in the cache as the agent does (``<cache_dir>/<sha256>``); return the hash."""
    sha256 = hashlib.sha256(data).hexdigest()
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / sha256).write_bytes(data)
    return sha256


def tree(root: Path) -> dict[str, str]:
    """Every entry below ``root``: files as their text, links as ``-> target``, folders as
    ``/`` (helper folders the runner left behind would show up here)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "/"
        else:
            found[rel] = path.read_bytes().decode("utf-8", "replace")
    return found


class Captured:
    """An ``EventWriter`` on a buffer, and the events it wrote."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.writer = EventWriter(self.buffer, Masker())

    def events(self) -> list[dict[str, Any]]:
        lines = self.buffer.getvalue().decode().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def logs(self, level: str | None = None) -> list[str]:
        return [
            e["message"]
            for e in self.events()
            if e["type"] == "log" and (level is None or e["level"] == level)
        ]
