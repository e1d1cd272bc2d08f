"""Plugin command bundles: a step type's target-side code, zipped reproducibly and named by
its SHA-256, the way the runner itself is (docs/plugins.md, "Code on the target").

A step type with :attr:`~octo_appliance.steps.base.StepType.target_code` gets one bundle:
the folder of its package (every file but bytecode caches; its parent packages as empty
``__init__.py`` files, so the package keeps its import name on the target without its
parents' appliance-side code), and ``octo-commands.json``, the manifest the runner reads
(``octo_runner.plugin_bundle``). Sorted entries, fixed timestamps and permissions: the same
source gives the same bytes, and so the same name, on every appliance. The bundle holds
source only: the target compiles it when the command is loaded (a few small modules).

:class:`BundleStore` builds each step type's bundle once per process, writes it as
``<sha256>.zip`` and answers ``plugin.fetch`` for exactly the bundles it built: an agent
can fetch nothing else through it, and checks the SHA-256 before it keeps or runs one.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import json
import os
import threading
from importlib.resources.abc import Traversable
from pathlib import Path

from octo_runner.plugin_api import API_VERSION
from octo_runner.plugin_bundle import MANIFEST

from octo_appliance.builds.runner import zip_members
from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_api.steps import TargetCode
from octo_appliance.plugin_api.transports import PluginBundle

SKIPPED_SUFFIXES = (".pyc", ".pyo")


def package_files(package: str) -> dict[str, bytes]:
    """Every file of an importable package by its path inside it (``sub/mod.py``), read
    through :mod:`importlib.resources`, so a package in a folder and one inside a wheel or
    zip on ``sys.path`` (the single executable's plugins) are bundled alike; bytecode caches
    are left out. PluginError when ``package`` is not an importable package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        raise PluginError(f"target-side package {package!r} cannot be found: {exc}") from None
    if spec is None or not spec.submodule_search_locations:
        raise PluginError(
            f"target-side package {package!r} is not a package (a folder with __init__.py)",
            hint="declare the package that holds the runner commands in TargetCode.package",
        )
    found: dict[str, bytes] = {}
    pending: list[tuple[str, Traversable]] = [("", importlib.resources.files(package))]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            if entry.name == "__pycache__" or entry.name.endswith(SKIPPED_SUFFIXES):
                continue
            if entry.is_dir():
                pending.append((f"{prefix}{entry.name}/", entry))
            elif entry.is_file():
                found[prefix + entry.name] = entry.read_bytes()
    return found


def bundle_members(name: str, code: TargetCode) -> dict[str, bytes]:
    """Every file of the bundle by its name in the zip, the manifest included."""
    prefix = code.package.replace(".", "/")
    members: dict[str, bytes] = {}
    parts = code.package.split(".")
    for depth in range(1, len(parts)):
        members["/".join(parts[:depth]) + "/__init__.py"] = b""
    for relative, data in package_files(code.package).items():
        members[f"{prefix}/{relative}"] = data
    manifest = {
        "api": API_VERSION,
        "name": name,
        "package": code.package,
        "commands": {
            command: _qualified(code, command, members, prefix) for command in code.commands
        },
    }
    members[MANIFEST] = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")
    return members


def _qualified(code: TargetCode, command: str, members: dict[str, bytes], prefix: str) -> str:
    """``package.module:function`` of one command, after checking it can exist."""
    problem = code.problem()
    if problem:
        raise PluginError(problem, hint="see docs/plugins.md, 'Code on the target'")
    target = code.commands[command]
    module, _, function = target.partition(":")
    path = module.replace(".", "/")
    if f"{prefix}/{path}.py" not in members and f"{prefix}/{path}/__init__.py" not in members:
        raise PluginError(
            f"runner command {command!r}: {code.package} has no module {module!r}",
            hint="the module holding the command must be in the declared package's folder",
        )
    return f"{code.package}.{module}:{function}"


def bundle_bytes(name: str, code: TargetCode) -> bytes:
    """The bundle of step type ``name`` (reproducible: same source, same bytes)."""
    return zip_members({}, bundle_members(name, code))


def plugin_bundles_dir(data_dir: Path) -> Path:
    """Where an appliance keeps the bundles it built: ``<data dir>/runner/plugins``."""
    return data_dir / "runner" / "plugins"


class BundleStore:
    """The bundles this appliance built (thread-safe), kept in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._by_name: dict[str, PluginBundle] = {}
        self._by_sha256: dict[str, PluginBundle] = {}

    def bundle_for(self, name: str, code: TargetCode) -> PluginBundle:
        """The bundle of step type ``name``, built on first use (blocking: a worker thread)."""
        with self._lock:
            known = self._by_name.get(name)
            if known is not None:
                return known
            data = bundle_bytes(name, code)
            digest = hashlib.sha256(data).hexdigest()
            path = self.directory / f"{digest}.zip"
            if not _holds(path, digest):
                self.directory.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(path.name + ".partial")
                partial.write_bytes(data)
                partial.chmod(0o644)
                os.replace(partial, path)
            bundle = PluginBundle(name, digest, path, len(data), frozenset(code.commands))
            self._by_name[name] = bundle
            self._by_sha256[digest] = bundle
            return bundle

    def get(self, sha256: str) -> PluginBundle | None:
        """A bundle this store built, by its SHA-256 (None: none of its own)."""
        with self._lock:
            return self._by_sha256.get(sha256)


def _holds(path: Path, sha256: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    except FileNotFoundError:
        return False
