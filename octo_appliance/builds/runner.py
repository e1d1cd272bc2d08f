"""The runner zipapp the appliance serves to agents: ``octo-runner-<version>.pyz``.

Built reproducibly from the ``octo_runner`` package (sorted entries, fixed timestamps), so the
same source gives the same SHA-256 everywhere, and an agent can verify what it fetched. A
frozen appliance carries a prebuilt archive (``build/build_appliance.sh`` bundles it);
otherwise the archive is built once per start from the installed package.

Beside each module's source the archive holds its bytecode (``name.pyc``, which zipimport
prefers): a zipapp cannot write a bytecode cache, so without it every runner start compiles
every module it imports, about a third of its CPU. The ``.pyc`` files are unchecked
hash-based (no timestamp inside, never compared with the source), and made by a fresh
interpreter (:mod:`octo_appliance.builds.bytecode`), because ``marshal`` output depends on
what else the compiling process holds. A target whose Python has another bytecode version
(another minor version) ignores them and compiles the source, as before.
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

from octo_appliance.builds.bytecode import compile_modules

SHEBANG = b"#!/usr/bin/env python3\n"
INCLUDED_SUFFIXES = (".py", ".sh", ".ps1")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
#: the entry point: ``main()``, then ``exit_now`` (flush, and no interpreter teardown)
MAIN = (
    "# -*- coding: utf-8 -*-\n"
    "import octo_runner.__main__\n"
    "octo_runner.__main__.exit_now(octo_runner.__main__.main())\n"
)
BUNDLED_NAME = "octo-runner.pyz"
#: package folders whose ``.py`` files are data (written beside a script), not imported
DATA_DIRS = ("octo_runner/helpers/",)


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


def imported(name: str) -> bool:
    """Whether the archive member ``name`` is a module the runner imports (so gets a .pyc)."""
    if not name.endswith(".py"):
        return False
    return name.endswith("/__init__.py") or not name.startswith(DATA_DIRS)


def archive_bytes(package: Path | None = None, *, bytecode: bool = True) -> bytes:
    """The archive; with ``bytecode``, each imported module's ``.pyc`` beside its source."""
    package = package or package_dir()
    members = {"__main__.py": MAIN.encode("utf-8")}
    for path in package_files(package):
        members[path.relative_to(package.parent).as_posix()] = path.read_bytes()
    if bytecode:
        sources = {name: data for name, data in members.items() if imported(name)}
        members.update((name + "c", pyc) for name, pyc in compile_modules(sources).items())
    buffer = io.BytesIO()
    buffer.write(SHEBANG)  # before the zip, so its offsets count from the file's start
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        _add(zf, "__main__.py", members.pop("__main__.py"))
        for name in sorted(members):
            _add(zf, name, members[name])
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
