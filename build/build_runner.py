#!/usr/bin/env python3
"""Build the runner zipapp: ``dist/octo-runner-<version>.pyz`` plus its ``.sha256`` file.

The archive is what ``python -m zipapp runner -m octo_runner.__main__:main -p "/usr/bin/env
python3"`` makes (a shebang line followed by a zip with a top-level ``__main__.py``), written
with ``zipfile`` directly so the build is reproducible: entries are sorted, timestamps and
permissions fixed, and caches (``__pycache__``, ``*.pyc``) left out, so the same source gives
the same SHA-256 on any machine. Nothing is compiled: the runner is source only.

Usage: ``python build/build_runner.py [--out DIR] [--json]``; prints path, size and SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "runner"
PACKAGE = "octo_runner"
SHEBANG = b"#!/usr/bin/env python3\n"
INCLUDED_SUFFIXES = (".py", ".sh", ".ps1")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
MAIN = (
    "# -*- coding: utf-8 -*-\n"
    "import sys\n"
    "import octo_runner.__main__\n"
    "sys.exit(octo_runner.__main__.main())\n"
)


def runner_version(source: Path = SOURCE) -> str:
    text = (source / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no __version__ in {source / PACKAGE / '__init__.py'}")
    return match.group(1)


def package_files(source: Path = SOURCE) -> list[Path]:
    """Every file of the package that belongs in the archive, in a stable order."""
    files = [
        path
        for path in (source / PACKAGE).rglob("*")
        if path.is_file()
        and path.suffix in INCLUDED_SUFFIXES
        and "__pycache__" not in path.relative_to(source).parts
    ]
    return sorted(files, key=lambda p: p.relative_to(source).as_posix())


def archive_bytes(source: Path = SOURCE) -> bytes:
    buffer = io.BytesIO()
    buffer.write(SHEBANG)  # before the zip, so its offsets count from the file's start
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        _add(zf, "__main__.py", MAIN.encode("utf-8"))
        for path in package_files(source):
            _add(zf, path.relative_to(source).as_posix(), path.read_bytes())
    return buffer.getvalue()


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16
    info.create_system = 3  # Unix, so the permissions above are read as such everywhere
    zf.writestr(info, data, compresslevel=9)


def build(out_dir: Path) -> dict[str, object]:
    """Write the archive and its checksum file into ``out_dir``; return what was built."""
    version = runner_version()
    data = archive_bytes()
    digest = hashlib.sha256(data).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"octo-runner-{version}.pyz"
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    os.replace(partial, target)
    checksum = target.with_name(target.name + ".sha256")
    checksum.write_text(f"{digest}  {target.name}\n", encoding="ascii")
    return {
        "path": str(target),
        "version": version,
        "size": len(data),
        "sha256": digest,
        "checksum_file": str(checksum),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Octo runner zipapp.")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = build(args.out)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"path:   {result['path']}")
        print(f"size:   {result['size']} bytes")
        print(f"sha256: {result['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
