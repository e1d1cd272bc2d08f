"""Placing a wheel into ``<data dir>/plugins/`` and taking a plugin out of it, on files only.

``install`` replaces another version of the same plugin but keeps it aside until the caller
has checked the new one loads (:meth:`Placement.commit` or :meth:`Placement.rollback`), so a
wheel that does not load never leaves the appliance without the version that did.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_loading import sources, state
from octo_appliance.plugin_loading.wheels import (
    WheelInfo,
    canonical_name,
    file_sha256,
    missing_requirements,
    prune_cache,
    read_wheel,
)

ASIDE_PREFIX = ".replaced-"


@dataclass
class Placement:
    """A wheel copied into the plugins folder; the versions it replaces kept aside."""

    info: WheelInfo
    path: Path
    aside: list[tuple[Path, Path]] = field(default_factory=list)

    def commit(self) -> None:
        for _, kept in self.aside:
            kept.unlink(missing_ok=True)

    def rollback(self) -> None:
        self.path.unlink(missing_ok=True)
        for original, kept in self.aside:
            kept.rename(original)


def install_wheel(data_dir: Path, wheel: Path, found: list[sources.Candidate]) -> Placement:
    """Copy ``wheel`` into the data dir's plugins folder; ``found`` is what is installed now
    (a plugin of the same name elsewhere than a wheel there is refused)."""
    if not wheel.is_file():
        raise PluginError(f"no file {wheel}", hint="give the path of a .whl file")
    info = read_wheel(wheel)
    missing = missing_requirements(info.requires)
    if missing:
        raise PluginError(
            f"{wheel.name} needs {', '.join(missing)}, which the appliance does not hold",
            hint="the single executable loads plugins whose dependencies it already holds",
        )
    folder = state.data_plugin_dir(data_dir)
    replaced = []
    for candidate in found:
        if candidate.name != info.name:
            continue
        location = Path(candidate.location)
        if candidate.source != sources.WHEEL or location.parent != folder:
            raise PluginError(
                f"plugin '{info.name}' is already installed as {candidate.source} "
                f"{candidate.location}",
                hint="remove that one first; one plugin name is installed once",
            )
        replaced.append(location)
    folder.mkdir(parents=True, exist_ok=True)
    placement = Placement(info, folder / wheel.name)
    for original in replaced:
        kept = original.with_name(ASIDE_PREFIX + original.name)
        original.rename(kept)
        placement.aside.append((original, kept))
    shutil.copyfile(wheel, placement.path)
    return placement


def remove_plugin(data_dir: Path, name: str, found: list[sources.Candidate]) -> list[Path]:
    """Delete the plugin ``name`` from the data dir's plugins folder; the paths removed."""
    name = canonical_name(name)
    folder = state.data_plugin_dir(data_dir)
    matches = [candidate for candidate in found if candidate.name == name]
    if not matches:
        raise PluginError(
            f"no plugin named '{name}' is installed", hint="octo-appliance plugin list names them"
        )
    removed = []
    for candidate in matches:
        location = Path(candidate.location)
        if candidate.source == sources.ENTRY_POINT or location.parent != folder:
            raise PluginError(
                f"plugin '{name}' is the {candidate.source} {candidate.location}, outside {folder}",
                hint="uninstall it where it lies, or 'octo-appliance plugin disable' it",
            )
        if location.is_dir():
            shutil.rmtree(location)
        else:
            location.unlink()
        removed.append(location)
    return removed


def prune_unpacked(data_dir: Path, folders: list[Path]) -> None:
    """Drop unpacked copies of wheels that no folder holds any more."""
    keep = {
        file_sha256(path) for folder in folders if folder.is_dir() for path in folder.glob("*.whl")
    }
    prune_cache(data_dir / state.CACHE_DIR_NAME, keep)
