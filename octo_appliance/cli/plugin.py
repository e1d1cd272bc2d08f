"""``octo-appliance plugin list|install|remove|disable|enable``: the plugins of a data dir.

These work on the data dir's files, offline, like ``api-key create``: no server is asked and
no database opened. A running appliance reads its plugins at start, so every change says to
restart it. ``install`` loads the new wheel once before keeping it (``plugin_loading.install``):
a wheel that would be ``failed`` is refused and the version it replaced stays.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from octo_appliance.cli.common import DATA_DIR_HELP
from octo_appliance.cli.output import Output, table
from octo_appliance.config import Config, load_config
from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_loading import install, sources, state
from octo_appliance.plugin_loading.wheels import canonical_name
from octo_appliance.plugins import BUILTIN, FAILED, PluginRecord, load_plugins, plugin_folders

RESTART = "Restart the appliance for this to take effect."


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugin", help="list, install, remove, disable or enable plugins (data dir, offline)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every plugin found, its state and what it adds")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(handler=run_list)
    adding = actions.add_parser("install", help="copy a wheel into <data dir>/plugins/")
    adding.add_argument("wheel", metavar="WHEEL", help="path of the plugin's .whl file")
    adding.set_defaults(handler=run_install)
    for action, handler, text in (
        ("remove", run_remove, "delete a plugin from <data dir>/plugins/"),
        ("disable", run_disable, "keep a plugin from loading (it stays installed)"),
        ("enable", run_enable, "load a disabled plugin again"),
    ):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("name", metavar="NAME", help="the plugin's name (see plugin list)")
        sub.set_defaults(handler=handler)
    for sub in actions.choices.values():
        sub.add_argument("--data-dir", metavar="D", help=DATA_DIR_HELP)


def _config(args: argparse.Namespace) -> Config:
    """The data dir's settings, never strict: these commands exist to show and fix failures."""
    return dataclasses.replace(load_config({"data_dir": args.data_dir}), plugins_strict=False)


def _existing(args: argparse.Namespace) -> Config:
    """:func:`_config` of a data dir that exists (a change never creates one)."""
    config = _config(args)
    if not config.data_path.is_dir():
        raise PluginError(
            f"no data dir at {config.data_path}",
            hint="pass --data-dir (or set OCTO_DATA_DIR) to the appliance's data dir",
        )
    return config


def _found(config: Config) -> list[sources.Candidate]:
    folders = plugin_folders(config.data_path)
    cache = config.data_path / state.CACHE_DIR_NAME
    return sources.discover(folders, cache, entry_points=True)


def _registers(record: PluginRecord) -> str:
    parts = [f"step types: {', '.join(record.step_types)}"] if record.step_types else []
    parts += [f"transports: {', '.join(record.transports)}"] if record.transports else []
    return "; ".join(parts) or "-"


def run_list(args: argparse.Namespace) -> int:
    plugins = load_plugins(_config(args))
    records = sorted(plugins.records, key=lambda r: (r.source == BUILTIN, r.name))
    rows = [[r.name, r.source, r.version or "-", r.state, _registers(r)] for r in records]
    lines = table(rows, ["NAME", "SOURCE", "VERSION", "STATE", "REGISTERS"])
    lines += [f"{r.name} failed: {r.error}" for r in records if r.state == FAILED]
    Output(args.json).result({"items": plugins.describe(), "total": len(records)}, lines)
    return 0


def run_install(args: argparse.Namespace) -> int:
    config = _existing(args)
    placement = install.install_wheel(config.data_path, Path(args.wheel), _found(config))
    try:
        record = next(r for r in load_plugins(config).records if r.name == placement.info.name)
    except BaseException:
        placement.rollback()
        raise
    if record.state == FAILED:
        placement.rollback()
        raise PluginError(
            f"{placement.path.name} does not load: {record.error}",
            hint="nothing was changed; fix the plugin and build its wheel again",
        )
    placement.commit()
    install.prune_unpacked(config.data_path, plugin_folders(config.data_path))
    print(f"Installed {record.name} {record.version} ({_registers(record)}) as {placement.path}.")
    if record.state != "loaded":
        print(f"It is {record.state}: 'octo-appliance plugin enable {record.name}' loads it.")
    print(RESTART)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    config = _existing(args)
    removed = install.remove_plugin(config.data_path, args.name, _found(config))
    install.prune_unpacked(config.data_path, plugin_folders(config.data_path))
    for path in removed:
        print(f"Removed {path}.")
    print(RESTART)
    return 0


def _switch(args: argparse.Namespace, disabled: bool) -> int:
    config = _existing(args)
    name = canonical_name(args.name)
    if name not in {candidate.name for candidate in _found(config)}:
        raise PluginError(
            f"no plugin named '{name}' is installed",
            hint="octo-appliance plugin list names them (built-in plugins cannot be disabled)",
        )
    changed = state.set_disabled(config.data_path, name, disabled)
    word = "disabled" if disabled else "enabled"
    print(f"Plugin {name} {'is now' if changed else 'was already'} {word}.")
    if not disabled and name in state.parse_names(config.disabled_plugins):
        print("It stays disabled while the setting disabled_plugins names it.")
    if changed:
        print(RESTART)
    return 0


def run_disable(args: argparse.Namespace) -> int:
    return _switch(args, True)


def run_enable(args: argparse.Namespace) -> int:
    return _switch(args, False)
