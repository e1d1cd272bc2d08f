"""Transport settings: declared by each transport the way ``config.py`` declares the
appliance's, read and checked once at start, handed over in the transport's context.

A transport lists :class:`~octo_appliance.setting.Setting` declarations in its ``settings``
class attribute (build them with :func:`transport_setting`: name, type, default, help, and
``minimum``/``choices`` where useful). For transport ``T`` and setting ``s`` the value comes
from ``OCTO_T_S`` in the environment (``T`` upper-case, dashes as underscores), else from the
config file's ``[transports.T]`` table key ``s``, else the default; it is parsed and
range-checked exactly like an appliance setting, and a bad one stops the start naming where it
came from. A transport may also declare one of the appliance's own settings
(:func:`appliance_setting`): its value is the appliance's (flags > env > file > default,
already checked). The built-in worker (``local``) declares its three that way, which keeps
``builtin_worker``, ``worker_user`` and ``worker_dir`` where operators set them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from octo_appliance.config import SETTINGS_BY_NAME, Config, config_table
from octo_appliance.exceptions import ConfigError
from octo_appliance.setting import Setting

SETTING_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: the config file's table of per-transport tables
TABLE = "transports"


def transport_setting(
    name: str,
    type: type,
    default: Any,
    help: str,
    *,
    minimum: int | None = None,
    choices: tuple[str, ...] = (),
) -> Setting:
    """Declare one setting of a transport. ``type`` is ``int``, ``bool`` or ``str``; a ``str``
    setting whose default is None is optional (empty text: unset)."""
    return Setting(
        name,
        default,
        help,
        type,
        optional=type is str and default is None,
        minimum=minimum,
        choices=choices,
    )


def appliance_setting(name: str) -> Setting:
    """Declare one of the appliance's own settings (``config.py``) as a transport's."""
    return SETTINGS_BY_NAME[name]


def env_var(transport: str, name: str) -> str:
    return f"OCTO_{transport.replace('-', '_').upper()}_{name.upper()}"


def check_declarations(settings: object) -> str | None:
    """What is wrong with a transport's ``settings`` declaration, or None."""
    if not isinstance(settings, tuple) or not all(isinstance(s, Setting) for s in settings):
        return "settings must be a tuple of octo_appliance.plugin_api.transport_setting(...)"
    names = [s.name for s in settings]
    for setting in settings:
        if not SETTING_NAME.match(setting.name) or names.count(setting.name) > 1:
            return f"setting name {setting.name!r} is malformed or declared twice"
        if setting.type not in (int, bool, str):
            return f"setting {setting.name} has type {setting.type!r}; use int, bool or str"
        if not setting.help:
            return f"setting {setting.name} has no help text"
    return None


def resolve_settings(
    transport: str,
    declared: Sequence[Setting],
    config: Config,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """The values of ``transport``'s settings, checked; :class:`ConfigError` for a bad one, or
    for a key of its config-file table that it does not declare."""
    tables = config_table(config, TABLE)
    table = tables.get(transport, {})
    source_file = f"{config.data_path / 'config.toml'} [{TABLE}.{transport}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{source_file} is not a table", hint=f"write [{TABLE}.{transport}]")
    unknown = sorted(set(table) - {s.name for s in declared})
    if unknown:
        known = ", ".join(s.name for s in declared) or "none"
        raise ConfigError(
            f"{source_file} names settings the {transport} transport does not declare: "
            f"{', '.join(unknown)} (it declares: {known})",
            hint="see docs/plugins.md, 'Transport settings', and the transport's documentation",
        )
    values: dict[str, Any] = {}
    for setting in declared:
        if SETTINGS_BY_NAME.get(setting.name) is setting:
            values[setting.name] = getattr(config, setting.name)
            continue
        variable = env_var(transport, setting.name)
        if variable in environ:
            values[setting.name] = setting.convert(environ[variable], variable, text=True)
        elif setting.name in table:
            source = f"{source_file} key {setting.name}"
            values[setting.name] = setting.convert(table[setting.name], source, text=False)
        else:
            values[setting.name] = setting.default
    return values
