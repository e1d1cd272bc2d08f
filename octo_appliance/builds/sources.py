"""What the octo-agent executable is made from, as one SHA-256: the key of the build cache.

The agent's own modules and every module of this package they import (followed through the
source, the way ``tests/unit/test_layering.py`` reads imports), the runner package it imports,
the spec and build script, the version stamped in, and the versions of Python, PyInstaller and
the third-party distributions those modules import. So a change to the API or the engine does
not rebuild the agent, and a change to anything the agent carries does.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import platform
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import octo_runner

import octo_appliance

PACKAGE = Path(octo_appliance.__file__).resolve().parent
#: the checkout a development install runs from (where agent.spec and build/ are)
ROOT = PACKAGE.parent
SPEC = ROOT / "agent.spec"
BUILD_SCRIPT = ROOT / "build" / "build_agent.sh"
#: the modules the agent starts from; the rest of its package follows from their imports
ENTRY_UNIT = "agent"


def _module_path(name: str) -> Path | None:
    """The source of ``octo_appliance.x.y`` (None: not a module, e.g. an attribute)."""
    parts = name.split(".")[1:]
    if not parts:
        return PACKAGE / "__init__.py"
    for candidate in (
        PACKAGE.joinpath(*parts[:-1], parts[-1] + ".py"),
        PACKAGE.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file():
            return candidate
    return None


def imported(module: str, path: Path) -> Iterator[str]:
    """Every module name ``module`` (whose source is ``path``) imports, relative imports
    resolved, wherever the import stands (``from a import b`` yields ``a`` and ``a.b``: ``b``
    may be a module). ``tests/unit/test_layering.py`` reads imports with it too."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _with_parents(name: str) -> Iterator[str]:
    """``a.b.c`` loads ``a`` and ``a.b`` first: their ``__init__`` is part of the build too."""
    parts = name.split(".")
    yield from (".".join(parts[:end]) for end in range(1, len(parts) + 1))


def agent_closure() -> tuple[list[Path], set[str]]:
    """The package's source files the agent loads, and the top-level names of everything
    else they import (the standard library, the runner, third-party distributions)."""
    pending = [f"octo_appliance.{ENTRY_UNIT}.{p.stem}" for p in (PACKAGE / ENTRY_UNIT).glob("*.py")]
    pending = [name.removesuffix(".__init__") for name in pending]
    seen: dict[str, Path] = {}
    outside: set[str] = set()
    while pending:
        for name in _with_parents(pending.pop()):
            if name in seen or not name.startswith("octo_appliance"):
                continue
            path = _module_path(name)
            if path is None:
                continue
            seen[name] = path
            for name_imported in imported(name, path):
                if name_imported.split(".")[0] == "octo_appliance":
                    pending.append(name_imported)
                elif name_imported:
                    outside.add(name_imported.split(".")[0])
    return sorted(seen.values()), outside


def _runner_files() -> list[Path]:
    root = Path(octo_runner.__file__).resolve().parent
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _distribution_versions(top_level: Iterable[str]) -> list[str]:
    """``name==version`` of the installed distributions that provide these top-level names."""
    providers = importlib.metadata.packages_distributions()
    found = set()
    for name in top_level:
        if name in sys.stdlib_module_names:
            continue
        for dist in providers.get(name, []):
            found.add(f"{dist}=={importlib.metadata.version(dist)}")
    for tool in ("pyinstaller",):
        try:
            found.add(f"{tool}=={importlib.metadata.version(tool)}")
        except importlib.metadata.PackageNotFoundError:
            found.add(f"{tool}==absent")
    return sorted(found)


def sources_digest(version: str) -> str:
    """One SHA-256 over everything the agent executable of ``version`` is made from."""
    files, outside = agent_closure()
    digest = hashlib.sha256()
    digest.update(f"version={version}\0python={sys.version}\0{platform.machine()}\0".encode())
    for line in _distribution_versions(outside):
        digest.update(line.encode() + b"\0")
    for path in [*files, *_runner_files(), SPEC, BUILD_SCRIPT]:
        shown = path.relative_to(ROOT) if ROOT in path.parents else Path(path.name)
        digest.update(shown.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"-")
    return digest.hexdigest()
