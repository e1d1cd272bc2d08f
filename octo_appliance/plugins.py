"""The plugin-manager factory: loads plugins and has them fill the registries.

Nothing happens at import time: :func:`create_plugin_manager` builds a manager, registers the
built-in modules, then each plugin :mod:`octo_appliance.plugin_loading` found (entry points,
wheels and package folders), checks its declared plugin API version and for misspelt hooks,
and asks it to fill the registries. A found plugin that fails any of that is recorded as
``failed`` with the reason, its registrations undone, and skipped (``plugins_strict`` turns
that into an error at start); a built-in or a plugin handed in code (``extra_plugins``)
failing is always an error. What plugins import (registries, hooks, interfaces) is the plugin
API, :mod:`octo_appliance.plugin_api`.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from octo_appliance import steps, transports
from octo_appliance.config import Config
from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_api import hookspecs
from octo_appliance.plugin_api.registry import Registry, StepTypeRegistry, TransportRegistry
from octo_appliance.plugin_api.version import check_api_version
from octo_appliance.plugin_loading import sources, state

__all__ = [
    "ENTRY_POINT_GROUP",
    "Plugins",
    "StepTypeRegistry",
    "TransportRegistry",
    "builtin_modules",
    "create_plugin_manager",
    "load_plugins",
]

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME


log = logging.getLogger("octo_appliance.plugins")

BUILTIN, EXTRA = "builtin", "extra"
LOADED, DISABLED, FAILED = "loaded", "disabled", "failed"


@dataclass
class PluginRecord:
    """One plugin as ``GET /api/v1/plugins`` and ``plugin list`` show it."""

    name: str
    #: builtin, entry-point, wheel, folder, or extra (handed in code: tests)
    source: str
    version: str = ""
    state: str = LOADED
    error: str | None = None
    location: str = ""
    step_types: list[str] = field(default_factory=list)
    transports: list[str] = field(default_factory=list)
    #: the names it is registered under in the plugin manager
    manager_names: list[str] = field(default_factory=list, repr=False)

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "builtin": self.source == BUILTIN,
            "version": self.version,
            "state": self.state,
            "error": self.error,
            "location": self.location,
            "step_types": self.step_types,
            "transports": self.transports,
        }


@dataclass
class Plugins:
    """The loaded plugin manager, the registries it filled, and every plugin found."""

    manager: pluggy.PluginManager
    step_types: StepTypeRegistry
    transports: TransportRegistry
    records: list[PluginRecord] = field(default_factory=list)

    def describe(self) -> list[dict[str, Any]]:
        """One row per plugin, failed and disabled ones included (``GET /api/v1/plugins``)."""
        return [record.row() for record in sorted(self.records, key=lambda r: r.name)]


def builtin_modules() -> tuple[str, ...]:
    return steps.BUILTIN_MODULES + transports.BUILTIN_MODULES


class _Loader:
    """Registers plugins one at a time, so one plugin's fault undoes only its own part."""

    def __init__(self, strict: bool) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.step_types = StepTypeRegistry()
        self.transports = TransportRegistry()
        self.records: list[PluginRecord] = []
        self.strict = strict

    def add(self, record: PluginRecord, load: Any) -> None:
        """Import (``load()`` -> manager name/object pairs), register and fill; a fault of a
        found plugin marks it failed, of a built-in or extra one raises."""
        self.records.append(record)
        try:
            for manager_name, plugin in load():
                check_api_version(manager_name, plugin)
                self.manager.register(plugin, name=manager_name)
                record.manager_names.append(manager_name)
                self._check_hooks(plugin)
            self._fill(record)
        except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not stop the start
            self._undo(record)
            if record.source in (BUILTIN, EXTRA):
                raise
            record.state, record.error = FAILED, _describe(exc)
            log.warning(
                "plugin %s (%s) failed and is skipped: %s",
                record.name,
                record.location,
                record.error,
            )

    def _check_hooks(self, plugin: object) -> None:
        for caller in self.manager.get_hookcallers(plugin) or []:
            if not caller.has_spec():
                raise PluginError(
                    f"a plugin implements a hook that does not exist: {caller.name}",
                    hint="check the hook name against octo_appliance.plugin_api.hookspecs",
                )

    def _fill(self, record: PluginRecord) -> None:
        """Call the plugin's own hooks, so each registry knows who added what."""
        pairs: list[tuple[str, Registry[Any], list[str]]] = [
            ("register_step_types", self.step_types, record.step_types),
            ("register_transports", self.transports, record.transports),
        ]
        for hook_name, registry, added in pairs:
            for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                if impl.plugin_name not in record.manager_names:
                    continue
                before = {entry.name for entry in registry}
                registry.current_plugin = impl.plugin_name
                try:
                    impl.function(**{arg: registry for arg in impl.argnames})
                finally:
                    registry.current_plugin = "?"
                    added.extend(sorted({entry.name for entry in registry} - before))

    def _undo(self, record: PluginRecord) -> None:
        for registry, added in (
            (self.step_types, record.step_types),
            (self.transports, record.transports),
        ):
            for name in added:
                registry.discard(name)
            added.clear()
        for manager_name in record.manager_names:
            if self.manager.has_plugin(manager_name):
                self.manager.unregister(name=manager_name)

    def result(self) -> Plugins:
        failed = [r for r in self.records if r.state == FAILED]
        if self.strict and failed:
            raise PluginError(
                "plugins failed to load: "
                + "; ".join(f"{r.name} ({r.location}): {r.error}" for r in failed),
                hint="fix or remove them, disable them (octo-appliance plugin disable NAME), "
                "or set plugins_strict = false to start without them",
            )
        return Plugins(self.manager, self.step_types, self.transports, self.records)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PluginError):
        return exc.message
    if isinstance(exc, ModuleNotFoundError):
        return f"it imports '{exc.name}', which the appliance does not hold"
    return f"{type(exc).__name__}: {exc}"


def _reject_duplicates(found: Sequence[sources.Candidate]) -> None:
    seen: dict[str, sources.Candidate] = {}
    for candidate in found:
        first = seen.setdefault(candidate.name, candidate)
        if first is not candidate:
            raise PluginError(
                f"plugin '{candidate.name}' is installed twice: as {first.source} "
                f"{first.location} and as {candidate.source} {candidate.location}",
                hint="remove one of the two (octo-appliance plugin list shows where they are)",
            )


def create_plugin_manager(
    *,
    extra_plugins: Iterable[object | ModuleType] = (),
    plugin_dir: Path | None = None,
    plugin_dirs: Sequence[Path] = (),
    cache_dir: Path | None = None,
    load_entry_points: bool = True,
    disabled: Iterable[str] = (),
    strict: bool = False,
) -> Plugins:
    """Build the plugin manager and fill the registries.

    ``plugin_dirs`` (and ``plugin_dir``) are searched for wheels, package folders and
    ``*.py`` files; wheels unpack into ``cache_dir`` (default: ``plugin-cache`` beside the
    first folder). Plugins named in ``disabled`` are listed but not imported.
    """
    loader = _Loader(strict)
    for module_name in builtin_modules():
        record = PluginRecord(module_name, BUILTIN, location=module_name)
        loader.add(record, lambda m=module_name: [(m, importlib.import_module(m))])
    folders = [*([plugin_dir] if plugin_dir is not None else []), *plugin_dirs]
    if cache_dir is None:
        cache_dir = (folders[0].parent if folders else Path.cwd()) / state.CACHE_DIR_NAME
    found = sources.discover(folders, cache_dir, entry_points=load_entry_points)
    _reject_duplicates(found)
    off = set(disabled)
    for candidate in found:
        record = PluginRecord(
            candidate.name, candidate.source, candidate.version, location=candidate.location
        )
        if candidate.name in off:
            record.state = DISABLED
            loader.records.append(record)
        elif candidate.problem is not None:
            loader.add(record, functools.partial(_raise, candidate.problem))
        else:
            loader.add(record, functools.partial(_versioned, candidate, record))
    for index, plugin in enumerate(extra_plugins):
        name = getattr(plugin, "__name__", None) or f"extra-{index}"
        loader.add(PluginRecord(name, EXTRA, location="code"), lambda p=plugin, n=name: [(n, p)])
    return loader.result()


def _raise(problem: str) -> sources.Loaded:
    raise PluginError(problem)


def _versioned(candidate: sources.Candidate, record: PluginRecord) -> sources.Loaded:
    """Import the candidate; a folder plugin's version is its ``__version__``, if any."""
    loaded = candidate.load()
    if not record.version:
        versions = {str(getattr(obj, "__version__", "")) for _, obj in loaded} - {""}
        record.version = versions.pop() if len(versions) == 1 else ""
    return loaded


def plugin_folders(data_dir: Path) -> list[Path]:
    """Where plugins are looked for: ``<data dir>/plugins/``, then ``plugins/`` beside the
    single executable."""
    return [state.data_plugin_dir(data_dir), *filter(None, [state.executable_plugin_dir()])]


def load_plugins(config: Config, *, extra_plugins: Iterable[object] = ()) -> Plugins:
    """The plugins of the appliance ``config`` describes: entry points and
    :func:`plugin_folders`, minus the disabled ones, strict as configured."""
    data_dir = config.data_path
    disabled = state.parse_names(config.disabled_plugins) | state.persisted_disabled(data_dir)
    return create_plugin_manager(
        extra_plugins=extra_plugins,
        plugin_dirs=plugin_folders(data_dir),
        cache_dir=data_dir / state.CACHE_DIR_NAME,
        disabled=disabled,
        strict=config.plugins_strict,
    )
