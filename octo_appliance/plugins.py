"""The plugin-manager factory and the registries plugins fill.

Nothing happens at import time: :func:`create_plugin_manager` builds a manager, registers the
built-in modules, loads ``octo_appliance`` entry points and the data dir's ``plugins/`` folder,
checks for misspelt hooks, then asks every plugin to fill the registries.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

import pluggy

from octo_appliance import hookspecs, steps, transports
from octo_appliance.exceptions import PluginError
from octo_appliance.steps.base import StepType
from octo_appliance.transports.base import Transport

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

T = TypeVar("T")


@dataclass(frozen=True)
class Registered(Generic[T]):
    """What a registry holds for one name: the class and the plugin that added it."""

    name: str
    cls: type[T]
    plugin: str


@dataclass
class _Registry(Generic[T]):
    """Name -> class, rejecting duplicates and malformed names with the plugins named."""

    kind: str
    base: type[T]
    _entries: dict[str, Registered[T]] = field(default_factory=dict)
    _current_plugin: str = "?"

    def add(self, cls: type[T]) -> None:
        """Register ``cls`` under its ``name`` attribute."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(
                f"plugin {self._current_plugin} added {cls!r} as a {self.kind}, "
                f"which is not a subclass of {self.base.__module__}.{self.base.__name__}"
            )
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise PluginError(
                f"plugin {self._current_plugin} added a {self.kind} with invalid name {name!r}",
                hint="names are lower-case words joined by dashes, like run-script",
            )
        if name in self._entries:
            first = self._entries[name].plugin
            raise PluginError(
                f"{self.kind} '{name}' is registered twice: by {first} and by "
                f"{self._current_plugin}",
                hint="uninstall or rename one of the two plugins",
            )
        self._entries[name] = Registered(name, cls, self._current_plugin)

    def get(self, name: str) -> type[T]:
        return self._entries[name].cls

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registered[T]]:
        return iter(sorted(self._entries.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._entries)


class StepTypeRegistry(_Registry[StepType]):
    """Filled by ``register_step_types`` hooks."""

    def __init__(self) -> None:
        super().__init__("step type", StepType)


class TransportRegistry(_Registry[Transport]):
    """Filled by ``register_transports`` hooks."""

    def __init__(self) -> None:
        super().__init__("transport", Transport)


@dataclass
class Plugins:
    """The loaded plugin manager and the registries it filled."""

    manager: pluggy.PluginManager
    step_types: StepTypeRegistry
    transports: TransportRegistry

    def describe(self) -> list[dict[str, Any]]:
        """One row per loaded plugin with what it registered (for ``GET /api/v1/plugins``)."""
        rows: dict[str, dict[str, Any]] = {}
        for name, plugin in self.manager.list_name_plugin():
            if plugin is None:
                continue
            rows[name] = {
                "name": name,
                "builtin": name.startswith("octo_appliance."),
                "step_types": [],
                "transports": [],
            }
        for entry in self.step_types:
            rows.setdefault(entry.plugin, _empty_row(entry.plugin))["step_types"].append(entry.name)
        for entry_t in self.transports:
            rows.setdefault(entry_t.plugin, _empty_row(entry_t.plugin))["transports"].append(
                entry_t.name
            )
        return sorted(rows.values(), key=lambda row: row["name"])


def _empty_row(name: str) -> dict[str, Any]:
    return {"name": name, "builtin": False, "step_types": [], "transports": []}


def builtin_modules() -> tuple[str, ...]:
    return steps.BUILTIN_MODULES + transports.BUILTIN_MODULES


def _load_folder(manager: pluggy.PluginManager, folder: Path) -> None:
    """Load every ``*.py`` in ``folder`` as a plugin module (for the single executable)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.py")):
        module_name = f"octo_appliance_folder_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"cannot load plugin file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise PluginError(
                f"plugin file {path} failed to import: {exc}",
                hint="fix the file or move it out of the plugins folder",
            ) from exc
        manager.register(module, name=f"folder:{path.name}")


def create_plugin_manager(
    *,
    extra_plugins: Iterable[object | ModuleType] = (),
    plugin_dir: Path | None = None,
    load_entry_points: bool = True,
) -> Plugins:
    """Build the plugin manager and fill the registries; raise :class:`PluginError` on faults."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for module_name in builtin_modules():
        manager.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points:
        try:
            manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:
            raise PluginError(f"an installed plugin failed to load: {exc}") from exc
    if plugin_dir is not None:
        _load_folder(manager, plugin_dir)
    for index, plugin in enumerate(extra_plugins):
        name = getattr(plugin, "__name__", None) or f"extra-{index}"
        manager.register(plugin, name=name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"a plugin implements a hook that does not exist: {exc}",
            hint="check the hook name against octo_appliance.hookspecs",
        ) from None
    step_types = StepTypeRegistry()
    transport_registry = TransportRegistry()
    _fill(manager, "register_step_types", step_types)
    _fill(manager, "register_transports", transport_registry)
    return Plugins(manager, step_types, transport_registry)


def _fill(manager: pluggy.PluginManager, hook_name: str, registry: _Registry[Any]) -> None:
    """Call each plugin's hook separately so the registry knows who added what."""
    caller = getattr(manager.hook, hook_name)
    for impl in caller.get_hookimpls():
        registry._current_plugin = impl.plugin_name
        impl.function(**{arg: registry for arg in impl.argnames})
    registry._current_plugin = "?"
