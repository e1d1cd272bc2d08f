"""Every setting, declared once as a typed field of :class:`Config`: name, type, default, help.

Values are read from flags > ``OCTO_*`` env > config file > default, and each one is parsed
and range-checked at start, whatever its source: a bad value stops the command with a message
naming where it came from (the flag, the environment variable, or the file and key) and what
was expected. So the rest of the code holds real ``int``/``bool``/``str`` values, and mypy
sees them.

The config file is ``config.toml`` in the data directory (flat ``key = value`` pairs with the
setting names below; TOML values must have the setting's type: ``task_cap = 5``, not
``task_cap = "5"``). ``docs/configuration.md`` is checked against :data:`SETTINGS` by a test,
so the documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from octo_appliance.exceptions import ConfigError
from octo_appliance.setting import Setting, parse_host_port

CONFIG_FILE_NAME = "config.toml"
LOG_LEVELS = ("debug", "info", "warning", "error")

T = TypeVar("T")


def _default_data_dir() -> str:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/var/lib/octo-appliance"
    return str(Path.home() / ".local" / "share" / "octo-appliance")


def setting(
    default: T,
    help: str,
    *,
    minimum: int | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[str], object] | None = None,
    expected: str | None = None,
) -> T:
    """Declare one setting as a field of :class:`Config` (its name is the field's name, its
    type the field's annotation). ``minimum`` bounds a whole number, ``choices`` lists the
    allowed words, ``check`` validates text further (raising :class:`ConfigError`), and
    ``expected`` describes the value in error messages when the type alone does not."""
    extra = {"minimum": minimum, "choices": choices, "check": check, "expected": expected}
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class Config:
    """The resolved settings, typed and checked. Build with :func:`load_config`."""

    data_dir: str = setting(
        "", "Directory holding the certificate, SQLite database and sealed files."
    )
    listen: str = setting(
        "0.0.0.0:8443",
        "HOST:PORT for HTTPS (TCP) and HTTP/3 (UDP).",
        check=parse_host_port,
        expected='HOST:PORT, like "0.0.0.0:8443"',
    )
    polling_listen: str = setting(
        "0.0.0.0:10943",
        "HOST:PORT of the mutual-TLS listener polling agents dial.",
        check=parse_host_port,
        expected='HOST:PORT, like "0.0.0.0:10943"',
    )
    database: str | None = setting(
        None,
        "Database URL: empty for SQLite in the data dir, or postgresql://USER@HOST:PORT/DB.",
    )
    database_connect_timeout: int = setting(
        5,
        "Seconds a PostgreSQL connection attempt may take; also the Retry-After of the 503 the "
        "API answers while the database is unavailable.",
        minimum=1,
    )
    tls_cert: str | None = setting(
        None, "PEM certificate to serve instead of the generated self-signed one."
    )
    tls_key: str | None = setting(None, "PEM private key for tls_cert.")
    master_key_file: str | None = setting(
        None,
        "Path of the master key file, outside the data dir (default: "
        "/etc/octo-appliance/master.key as root, else "
        "$XDG_CONFIG_HOME/octo-appliance/master.key); share it between nodes.",
    )
    max_body_bytes: int = setting(
        1_048_576,
        "Largest JSON request body the API accepts, in bytes (413 beyond).",
        minimum=1,
    )
    worker_threads: int = setting(
        6,
        "Threads that run database work for API requests (kept small: more threads contend "
        "for the interpreter lock).",
        minimum=1,
    )
    task_cap: int = setting(5, "Server tasks this node runs at once.", minimum=1)
    node_name: str = setting(
        "", "This node's name in the node list (default: the host name); unique among nodes."
    )
    node_address: str = setting(
        "", "HOST:PORT other nodes and the node list show for this node (default: listen)."
    )
    node_dead_after_seconds: int = setting(
        30, "A node whose heartbeat is older is declared dead; its tasks fail.", minimum=3
    )
    node_heartbeat_seconds: int = setting(5, "Seconds between node heartbeats.", minimum=1)
    stop_grace_seconds: int = setting(
        0, "On SIGTERM, seconds running tasks may finish before they are failed.", minimum=0
    )
    shared_dir: str | None = setting(
        None,
        "Directory every node mounts for packages, the signing key and the generated "
        "certificate (default: the data dir); see docs/ha.md.",
    )
    task_log_max_lines: int = setting(
        1_000_000,
        "Script output lines one task keeps in its log; past it a count and the last lines.",
        minimum=1,
    )
    health_check_minutes: int = setting(
        60, "Minutes between scheduled health checks of every agent target.", minimum=1
    )
    pickup_timeout_seconds: int = setting(
        120, "How long a request for a polling agent waits for the agent to connect.", minimum=1
    )
    handshake_timeout_seconds: int = setting(
        10,
        "Seconds a connection to the HTTPS or polling listener may take to finish TLS (and, "
        "on the polling listener, the comms HELLO) before it is dropped.",
        minimum=1,
    )
    max_pending_handshakes: int = setting(
        256,
        "Connections each listener (HTTPS, polling) holds in the TLS handshake at once; a new "
        "one pushes out the oldest (at most a quarter of the open-file limit).",
        minimum=1,
    )
    max_pending_handshakes_per_address: int = setting(
        32,
        "Of those, how many may come from one client address; a newcomer over it waits (or "
        "pushes out one of its address that has sent nothing for a quarter of the timeout).",
        minimum=1,
    )
    session_hours: int = setting(12, "Lifetime of a portal/API login session in hours.", minimum=1)
    login_free_failures: int = setting(
        3,
        "Failed sign-ins a username or client address may make before each further one blocks "
        "it for a delay (429 with Retry-After).",
        minimum=1,
    )
    login_delay_seconds: int = setting(
        1,
        "The first sign-in delay, in seconds; it doubles with every further failure.",
        minimum=1,
    )
    login_lockout_failures: int = setting(
        10,
        "Failed sign-ins after which a username or client address is locked out.",
        minimum=1,
    )
    login_lockout_seconds: int = setting(
        900,
        "How long a sign-in lockout lasts (and how long failures are remembered), in seconds.",
        minimum=1,
    )
    log_level: str = setting(
        "info", "Log level: debug, info, warning or error.", choices=LOG_LEVELS
    )
    http3: bool = setting(True, "Serve HTTP/3 over QUIC on the same port as HTTPS (UDP).")
    builtin_worker: bool = setting(
        True,
        "Run steps marked run_on: appliance on the appliance itself (false: such steps fail).",
    )
    backup_before_upgrade: bool = setting(
        True,
        "Take a backup (the format of 'octo-appliance backup') before a start migrates the "
        "schema to a newer version; a start that cannot take it does not migrate.",
    )
    upgrade_backup_dir: str | None = setting(
        None,
        "Where the backups taken before a schema upgrade go (default: backups/ in the data dir).",
    )
    worker_user: str | None = setting(
        None, "OS user the built-in worker runs scripts as (empty: the appliance's own user)."
    )
    worker_dir: str | None = setting(
        None,
        "Directory of the built-in worker's work dirs (default: worker/ in the data dir, or "
        "<data dir>-worker when worker_user is set).",
    )
    step_parallelism: int = setting(
        50,
        "Most targets one deployment step runs on at once (a step's window may lower it).",
        minimum=1,
    )
    max_package_mb: int = setting(
        10240,
        "Largest package the feed accepts, in MiB (413 above; nothing is stored).",
        minimum=1,
    )
    max_expanded_mb: int = setting(
        16384,
        "Most a package may expand to, in MiB (422 at upload above; checked without expanding "
        "a zip, and while reading a tar.gz).",
        minimum=1,
    )
    max_expansion_ratio: int = setting(
        200,
        "Most a package may expand to as a multiple of its size (422 at upload above, once it "
        "expands past 64 MiB): refuses archive bombs.",
        minimum=1,
    )
    package_parallelism: int = setting(
        20,
        "Most targets a package is transferred to at once before a deploy-package step.",
        minimum=1,
    )
    delta_max_mb: int = setting(
        512,
        "Largest package (MiB) for which a binary delta against another version a target holds "
        "is computed; larger ones are sent whole.",
        minimum=1,
    )
    plugins_strict: bool = setting(
        False,
        "Refuse to start when a plugin fails to import or register (false: it is reported in "
        "GET /api/v1/plugins, plugin list and the log, and skipped).",
    )
    disabled_plugins: str | None = setting(
        None,
        "Comma-separated names of plugins not to load (added to those 'octo-appliance plugin "
        "disable' keeps).",
    )
    agent_updates: str = setting(
        "auto",
        "auto: agents update themselves to the build this appliance serves as soon as they "
        "connect; manual: only when asked (POST /api/v1/targets/{ref}/update-agent).",
        choices=("auto", "manual"),
    )
    agent_update_cap: int = setting(
        10, "Most agents updating themselves at once (the others queue).", minimum=1
    )
    agent_update_confirm_seconds: int = setting(
        60,
        "Seconds a new agent build has to connect and confirm, else it is rolled back.",
        minimum=5,
    )
    agent_update_wait_seconds: int = setting(
        300,
        "Most seconds a task waits for an agent that is updating itself before it goes ahead.",
        minimum=1,
    )
    agent_build_file: str | None = setting(
        None,
        "An agent build to offer agents for self-update instead of the one GET /api/v1/agent "
        'serves; its version is declared beside it in FILE.manifest.json ({"version": ...}).',
    )
    shutdown_grace_seconds: int = setting(
        1, "Seconds the server waits for open requests on shutdown.", minimum=1
    )
    agent_build_dir: str = setting(
        "",
        "Where a development install keeps the octo-agent builds it makes, by source hash "
        "(empty: $XDG_CACHE_HOME/octo-appliance/agent-builds). A frozen appliance serves the "
        "build it embeds.",
    )
    agent_build_on_request: bool = setting(
        True,
        "Whether a development install builds octo-agent (PyInstaller, minutes) when it is "
        "first asked for one; off: it serves only a build already in agent_build_dir.",
    )

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def shared_path(self) -> Path:
        """Where sealed files shared by every node live: ``shared_dir``, else the data dir."""
        return Path(self.shared_dir).expanduser() if self.shared_dir else self.data_path


def _declared() -> tuple[Setting, ...]:
    hints = get_type_hints(Config)
    declared = []
    for item in dataclasses.fields(Config):
        hint = hints[item.name]
        optional = hint == str | None
        if not optional and hint not in (int, bool, str):
            raise TypeError(f"setting {item.name}: {hint} is not int, bool, str or str | None")
        meta = item.metadata
        declared.append(
            Setting(
                item.name,
                item.default,
                meta["help"],
                str if optional else hint,
                optional=optional,
                minimum=meta["minimum"],
                choices=meta["choices"],
                check=meta["check"],
                expected_text=meta["expected"],
            )
        )
    return tuple(declared)


SETTINGS: tuple[Setting, ...] = _declared()
SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}
#: tables of the config file that plugins' declarations check, not this module
#: (``[transports.NAME]``: a transport's declared settings, docs/plugins.md)
PLUGIN_TABLES = ("transports",)


def resolve_data_dir(flag_value: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Data dir from the flag, else ``OCTO_DATA_DIR``, else the per-user default."""
    environ = os.environ if environ is None else environ
    return Path(flag_value or environ.get("OCTO_DATA_DIR") or _default_data_dir()).expanduser()


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix or remove it") from None
    unknown = sorted(set(raw) - set(SETTINGS_BY_NAME) - set(PLUGIN_TABLES))
    if unknown:
        raise ConfigError(
            f"{path} names unknown settings: {', '.join(unknown)}",
            hint="see docs/configuration.md for the list",
        )
    return raw


def config_table(config: Config, name: str) -> dict[str, Any]:
    """One of :data:`PLUGIN_TABLES` from the data dir's config file (empty when absent);
    its keys are checked by whoever declares them (plugin_api/settings.py)."""
    table = _read_config_file(config.data_path / CONFIG_FILE_NAME).get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{config.data_path / CONFIG_FILE_NAME}: {name} is not a table")
    return table


def load_config(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Resolve and check every setting: flags (not None) > ``OCTO_*`` env > config file >
    default. Flags and env are text, parsed; the file's TOML values must have the right type."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    data_dir = resolve_data_dir(flags.get("data_dir"), environ)
    file = data_dir / CONFIG_FILE_NAME
    from_file = _read_config_file(file)
    values: dict[str, Any] = {"data_dir": str(data_dir)}
    for setting in SETTINGS:
        if setting.name == "data_dir":
            continue
        if setting.name in flags:
            source = "--" + setting.name.replace("_", "-")
            values[setting.name] = setting.convert(flags[setting.name], source, text=True)
        elif setting.env_var in environ:
            raw = environ[setting.env_var]
            values[setting.name] = setting.convert(raw, setting.env_var, text=True)
        elif setting.name in from_file:
            source = f"{file} key {setting.name}"
            values[setting.name] = setting.convert(from_file[setting.name], source, text=False)
    return Config(**values)
