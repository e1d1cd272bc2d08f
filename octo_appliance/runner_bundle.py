"""The runner zipapp the appliance serves to agents: ``octo-runner-<version>.pyz``.

Built reproducibly from the ``octo_runner`` package (sorted entries, fixed timestamps, source
only), so the same source gives the same SHA-256 everywhere, and an agent can verify what it
fetched. A frozen appliance carries a prebuilt archive (``build/build_appliance.sh`` bundles
it); otherwise the archive is built once per start from the installed package.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import octo_runner

SHEBANG = b"#!/usr/bin/env python3\n"
INCLUDED_SUFFIXES = (".py", ".sh", ".ps1")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
MAIN = (
    "# -*- coding: utf-8 -*-\n"
    "import sys\n"
    "import octo_runner.__main__\n"
    "sys.exit(octo_runner.__main__.main())\n"
)
BUNDLED_NAME = "octo-runner.pyz"


@dataclass(frozen=True)
class RunnerBuild:
    version: str
    sha256: str
    path: Path
    size: int


def package_dir() -> Path:
    return Path(octo_runner.__file__).resolve().parent


def package_files(package: Path) -> list[Path]:
    """Every file of the package that belongs in the archive, in a stable order."""
    files = [
        path
        for path in package.rglob("*")
        if path.is_file()
        and path.suffix in INCLUDED_SUFFIXES
        and "__pycache__" not in path.relative_to(package).parts
    ]
    return sorted(files, key=lambda p: p.relative_to(package.parent).as_posix())


def archive_bytes(package: Path | None = None) -> bytes:
    package = package or package_dir()
    buffer = io.BytesIO()
    buffer.write(SHEBANG)  # before the zip, so its offsets count from the file's start
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        _add(zf, "__main__.py", MAIN.encode("utf-8"))
        for path in package_files(package):
            _add(zf, path.relative_to(package.parent).as_posix(), path.read_bytes())
    return buffer.getvalue()


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16
    info.create_system = 3  # Unix, so the permissions above are read as such everywhere
    zf.writestr(info, data, compresslevel=9)


def write_archive(data: bytes, out_dir: Path, version: str) -> RunnerBuild:
    """Write ``data`` as ``octo-runner-<version>.pyz`` (+ ``.sha256``) atomically."""
    digest = hashlib.sha256(data).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"octo-runner-{version}.pyz"
    if not (target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == digest):
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        partial.chmod(0o755)
        os.replace(partial, target)
    (out_dir / (target.name + ".sha256")).write_text(f"{digest}  {target.name}\n", "ascii")
    return RunnerBuild(version, digest, target, len(data))


def _bundled_archive() -> Path | None:
    base = getattr(sys, "_MEIPASS", None)
    if base is None:
        return None
    candidate = Path(base) / BUNDLED_NAME
    return candidate if candidate.is_file() else None


def prepare_runner(data_dir: Path) -> RunnerBuild:
    """The runner build this appliance serves, written under ``data_dir/runner``."""
    bundled = _bundled_archive()
    data = bundled.read_bytes() if bundled is not None else archive_bytes()
    return write_archive(data, data_dir / "runner", octo_runner.__version__)
