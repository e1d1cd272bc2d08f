"""Small archives for feed tests, built in memory, and a look at what the feed left on disk."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any


def zip_bytes(files: dict[str, bytes], *, stored: bool = False) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


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
    """Every file under the data dir's ``files/`` (sealed packages, temporaries, anything)."""
    root = data_dir / "files"
    if not root.is_dir():
        return []
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())
