"""Where plugins come from, found without importing them: entry points of installed
distributions, then wheels and package folders in each plugins folder.

Each is a :class:`Candidate` with its name (the distribution's, or the folder's), version and
a ``load`` that imports it and returns the objects to hand to the plugin manager. Nothing is
imported until the loader decided the plugin is enabled, so a disabled plugin's bugs never
run; a candidate that cannot even be read (a damaged wheel) carries its ``problem`` instead.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_loading.wheels import (
    ENTRY_POINT_GROUP,
    WheelInfo,
    canonical_name,
    missing_requirements,
    read_wheel,
    unpack,
)

#: (name for the plugin manager, plugin object) pairs one candidate brings
Loaded = list[tuple[str, object]]

ENTRY_POINT, WHEEL, FOLDER = "entry-point", "wheel", "folder"


@dataclass
class Candidate:
    """One plugin found, not yet imported."""

    name: str
    source: str
    #: the file, folder or distribution it was found as (for messages and ``plugin list``)
    location: str
    version: str = ""
    load: Callable[[], Loaded] = field(default=lambda: [], repr=False)
    #: why it cannot be loaded at all, known before importing it
    problem: str | None = None


def _reference(value: str) -> object:
    """``module`` or ``module:attr.sub`` (an entry point's value), imported."""
    module_name, _, attribute = value.partition(":")
    target: object = importlib.import_module(module_name.strip())
    for part in filter(None, attribute.strip().split(".")):
        target = getattr(target, part)
    return target


def _named(name: str, references: dict[str, str]) -> Loaded:
    """One manager name per entry point: the plugin's own when it has just one."""
    if len(references) == 1:
        return [(name, _reference(next(iter(references.values()))))]
    return [(f"{name}:{key}", _reference(value)) for key, value in sorted(references.items())]


def entry_point_candidates() -> list[Candidate]:
    """Installed distributions declaring ``octo_appliance`` entry points (development and
    pip installs; the single executable holds none of its own)."""
    grouped: dict[str, tuple[str, str, dict[str, str]]] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry.dist
        name = canonical_name(dist.name if dist is not None else entry.name)
        version = dist.version if dist is not None else ""
        grouped.setdefault(name, (name, version, {}))[2][entry.name] = entry.value
    return [
        Candidate(
            name,
            ENTRY_POINT,
            f"distribution {name} {version}".rstrip(),
            version,
            load=lambda name=name, refs=refs: _named(name, refs),  # type: ignore[misc]
        )
        for name, version, refs in grouped.values()
    ]


def folder_candidates(folder: Path, cache_root: Path) -> list[Candidate]:
    """Wheels (``*.whl``), package folders (with ``__init__.py``) and single ``*.py`` files."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "_")):
            continue
        if path.suffix == ".whl" and path.is_file():
            found.append(_wheel_candidate(path, cache_root))
        elif path.is_dir() and (path / "__init__.py").is_file():
            found.append(_module_candidate(folder, path.name, path))
        elif path.suffix == ".py" and path.is_file():
            found.append(_module_candidate(folder, path.stem, path))
    return found


def _wheel_candidate(path: Path, cache_root: Path) -> Candidate:
    try:
        info = read_wheel(path)
    except PluginError as exc:
        name = canonical_name(path.name.split("-", 1)[0])
        return Candidate(name, WHEEL, str(path), problem=exc.message)
    return Candidate(
        info.name,
        WHEEL,
        str(path),
        info.version,
        load=lambda: _load_wheel(info, cache_root),
    )


def _load_wheel(info: WheelInfo, cache_root: Path) -> Loaded:
    missing = missing_requirements(info.requires)
    if missing:
        raise PluginError(
            f"{info.path.name} needs {', '.join(missing)}, which the appliance does not hold",
            hint="the single executable loads plugins whose dependencies it already holds",
        )
    _on_path(unpack(info, cache_root))
    return _named(info.name, info.entry_points)


def _module_candidate(folder: Path, module_name: str, path: Path) -> Candidate:
    return Candidate(
        canonical_name(module_name),
        FOLDER,
        str(path),
        load=lambda: [(canonical_name(module_name), _import_from(folder, module_name, path))],
    )


def _import_from(folder: Path, module_name: str, path: Path) -> ModuleType:
    """Import ``module_name`` with ``folder`` on ``sys.path`` (so its siblings import too),
    refusing a name some other module already answers to."""
    _on_path(folder)
    module = importlib.import_module(module_name)
    origin = Path(getattr(module, "__file__", "") or "").resolve()
    if not origin.is_relative_to(path.resolve()):
        raise PluginError(
            f"{path.name}: the module name '{module_name}' is already taken by {origin}",
            hint="rename the plugin's module to a name of its own",
        )
    return module


def _on_path(directory: Path) -> None:
    """Appended, never prepended: a plugin cannot shadow the appliance's own modules."""
    entry = str(directory)
    if entry not in sys.path:
        sys.path.append(entry)


def discover(folders: Iterable[Path], cache_root: Path, *, entry_points: bool) -> list[Candidate]:
    """Every candidate, in load order: entry points, then each folder's, sorted by file name."""
    found = entry_point_candidates() if entry_points else []
    for folder in folders:
        found.extend(folder_candidates(folder, cache_root))
    return found
