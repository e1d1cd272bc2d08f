#!/usr/bin/env python3
"""Build the runner zipapp: ``dist/octo-runner-<version>.pyz`` plus its ``.sha256`` file.

The archive is what ``python -m zipapp runner -m octo_runner.__main__:main -p "/usr/bin/env
python3"`` makes (a shebang line followed by a zip with a top-level ``__main__.py``), written
with ``zipfile`` directly so the build is reproducible: entries are sorted, timestamps and
permissions fixed, ``__pycache__`` left out, and each imported module's bytecode added beside
it as an unchecked hash-based ``name.pyc`` compiled by a fresh interpreter (see
``octo_appliance/builds/runner.py``), so the same source and Python give the same SHA-256 on
any machine. A target on another Python minor version ignores the bytecode for the source.

Usage: ``python build/build_runner.py [--out DIR] [--json]``; prints path, size and SHA-256.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "runner"))
sys.path.insert(0, str(ROOT))

import octo_runner  # noqa: E402

from octo_appliance.builds.runner import (  # noqa: E402  (after the path set-up)
    archive_bytes,
    package_dir,
    write_archive,
)


def runner_version() -> str:
    return octo_runner.__version__


def build(out_dir: Path) -> dict[str, object]:
    """Write the archive and its checksum file into ``out_dir``; return what was built."""
    built = write_archive(archive_bytes(package_dir()), out_dir, runner_version())
    return {
        "path": str(built.path),
        "version": built.version,
        "size": built.size,
        "sha256": built.sha256,
        "checksum_file": str(built.path.with_name(built.path.name + ".sha256")),
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
