"""The plugin-manager factory: loads plugins and has them fill the registries.

Nothing happens at import time: :func:`create_plugin_manager` builds a manager, registers the
built-in modules, loads ``octo_appliance`` entry points and the data dir's ``plugins/`` folder,
checks each plugin's declared plugin API version and for misspelt hooks, then asks every plugin
to fill the registries. What plugins import (registries, hooks, interfaces) is the plugin API,
:mod:`octo_appliance.plugin_api`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from octo_appliance import steps, transports
from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_api import hookspecs
from octo_appliance.plugin_api.registry import Registry, StepTypeRegistry, TransportRegistry
from octo_appliance.plugin_api.version import check_api_version

__all__ = [
    "ENTRY_POINT_GROUP",
    "Plugins",
    "StepTypeRegistry",
    "TransportRegistry",
    "builtin_modules",
    "create_plugin_manager",
]

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME


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
    for name, plugin in manager.list_name_plugin():
        if plugin is not None:
            check_api_version(name, plugin)
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


def _fill(manager: pluggy.PluginManager, hook_name: str, registry: Registry[Any]) -> None:
    """Call each plugin's hook separately so the registry knows who added what."""
    caller = getattr(manager.hook, hook_name)
    for impl in caller.get_hookimpls():
        registry.current_plugin = impl.plugin_name
        impl.function(**{arg: registry for arg in impl.argnames})
    registry.current_plugin = "?"
