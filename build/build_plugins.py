"""Build the wheels of plugin distributions (default: every ``plugins/*/`` with a pyproject).

Usage: ``python build/build_plugins.py [--out dist/plugins] [DIR ...]``; prints one line per
wheel: its path and SHA-256.

Why not ``pip wheel``: it needs the ``wheel`` package or network access for an isolated build,
and neither is promised on a build machine; a plugin wheel is simple enough to write with the
standard library (PEP 427), reproducibly (sorted entries, fixed times), so the same sources
always give the same SHA-256. What it reads from ``pyproject.toml``: ``[project]`` ``name``,
``version``, ``description``, ``requires-python``, ``dependencies`` and
``[project.entry-points.*]`` (all static); the packages are the directories with an
``__init__.py`` under ``src/`` if there is one, else at the top (``tests`` excepted), every file
in them included (a plugin's target-side code and data files too). ``pip wheel DIR`` builds an
equivalent wheel where it works.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCH = (1980, 1, 1, 0, 0, 0)
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}


class BuildError(Exception):
    """A distribution this builder cannot make a wheel of (the message says why)."""


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _packages(source: Path) -> tuple[Path, list[Path]]:
    base = source / "src" if (source / "src").is_dir() else source
    packages = [
        path
        for path in sorted(base.iterdir())
        if path.is_dir() and (path / "__init__.py").is_file() and path.name != "tests"
    ]
    if not packages:
        raise BuildError(f"{source}: no package (a folder with __init__.py) in {base}")
    return base, packages


def _metadata(project: dict[str, object]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}"]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", []) or []]  # type: ignore[union-attr]
    return "\n".join(lines) + "\n"


def _entry_points(project: dict[str, object]) -> str:
    groups = project.get("entry-points", {}) or {}
    text = ""
    for group, entries in sorted(groups.items()):  # type: ignore[union-attr]
        text += f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(entries.items()))
    return text


def build_wheel(source: Path, out: Path) -> Path:
    """Write ``source``'s wheel into ``out`` and return its path."""
    pyproject = source / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"{pyproject}: no readable [project] table ({exc})") from None
    if "version" in project.get("dynamic", []) or not project.get("version"):
        raise BuildError(f"{pyproject}: the version must be static ([project] version = ...)")
    stem = f"{re.sub(r'[-_.]+', '_', project['name']).lower()}-{project['version']}"
    files: dict[str, bytes] = {}
    base, packages = _packages(source)
    for package in packages:
        for path in sorted(package.rglob("*")):
            if path.is_file() and not SKIPPED_PARTS & set(path.parts) and path.suffix != ".pyc":
                files[path.relative_to(base).as_posix()] = path.read_bytes()
    dist_info = f"{stem}.dist-info"
    files[f"{dist_info}/METADATA"] = _metadata(project).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: octo build_plugins\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    files[f"{dist_info}/entry_points.txt"] = _entry_points(project).encode()
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():  # dist-info last, as PEP 427 recommends
            info = zipfile.ZipInfo(name, EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "plugins")
    parser.add_argument("sources", nargs="*", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    sources = args.sources or sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
    for source in sources:
        try:
            wheel = build_wheel(source, args.out)
        except BuildError as exc:
            print(f"build_plugins: error: {exc}", file=sys.stderr)
            print(
                "build_plugins: hint: see the docstring of build/build_plugins.py", file=sys.stderr
            )
            return 1
        print(f"{wheel} {hashlib.sha256(wheel.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
