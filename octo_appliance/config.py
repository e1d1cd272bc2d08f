"""Every setting as (name, default, help), read from flags > ``OCTO_*`` env > config file.

The config file is ``config.toml`` in the data directory (flat ``key = value`` pairs with the
setting names below). ``docs/configuration.md`` is checked against :data:`SETTINGS` by a test,
so the documentation cannot drift from the code.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo_appliance.exceptions import ConfigError

CONFIG_FILE_NAME = "config.toml"


@dataclass(frozen=True)
class Setting:
    """One setting: its name, default, how to parse it and a line of help."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env_var(self) -> str:
        return "OCTO_" + self.name.upper()


def _default_data_dir() -> str:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/var/lib/octo-appliance"
    return str(Path.home() / ".local" / "share" / "octo-appliance")


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:PORT`` for IPv6) with a clear error."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(
            f"'{value}' is not HOST:PORT", hint="write it like 0.0.0.0:8443 or 127.0.0.1:0"
        )
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"port '{port_text}' in '{value}' is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} in '{value}' is out of range 0-65535")
    return host, port


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"'{value}' is not a whole number") from None
    if number <= 0:
        raise ConfigError(f"'{value}' must be greater than zero")
    return number


def _listen(value: str) -> str:
    parse_host_port(value)
    return value


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"'{value}' is not true or false")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir", None, "Directory holding the certificate, SQLite database and sealed files."
    ),
    Setting("listen", "0.0.0.0:8443", "HOST:PORT for HTTPS (TCP) and HTTP/3 (UDP).", _listen),
    Setting(
        "polling_listen",
        "0.0.0.0:10943",
        "HOST:PORT of the mutual-TLS listener polling agents dial.",
        _listen,
    ),
    Setting(
        "database",
        None,
        "Database URL: empty for SQLite in the data dir, or postgresql://USER@HOST:PORT/DB.",
    ),
    Setting(
        "database_connect_timeout",
        5,
        "Seconds a PostgreSQL connection attempt may take; also the Retry-After of the 503 the "
        "API answers while the database is unavailable.",
        _positive_int,
    ),
    Setting("tls_cert", None, "PEM certificate to serve instead of the generated self-signed one."),
    Setting("tls_key", None, "PEM private key for tls_cert."),
    Setting(
        "master_key_file",
        None,
        "Path of the master key file, outside the data dir (default: "
        "/etc/octo-appliance/master.key as root, else "
        "$XDG_CONFIG_HOME/octo-appliance/master.key); share it between nodes.",
    ),
    Setting(
        "max_body_bytes",
        1_048_576,
        "Largest JSON request body the API accepts, in bytes (413 beyond).",
        _positive_int,
    ),
    Setting(
        "worker_threads",
        6,
        "Threads that run database work for API requests (kept small: more threads contend "
        "for the interpreter lock).",
        _positive_int,
    ),
    Setting("task_cap", 5, "Server tasks this node runs at once.", _positive_int),
    Setting(
        "task_log_max_lines",
        1_000_000,
        "Script output lines one task keeps in its log; past it a count and the last lines.",
        _positive_int,
    ),
    Setting(
        "health_check_minutes",
        60,
        "Minutes between scheduled health checks of every agent target.",
        _positive_int,
    ),
    Setting(
        "pickup_timeout_seconds",
        120,
        "How long a request for a polling agent waits for the agent to connect.",
        _positive_int,
    ),
    Setting(
        "handshake_timeout_seconds",
        10,
        "Seconds a connection to the HTTPS or polling listener may take to finish TLS (and, "
        "on the polling listener, the comms HELLO) before it is dropped.",
        _positive_int,
    ),
    Setting(
        "max_pending_handshakes",
        256,
        "Connections each listener (HTTPS, polling) holds in the TLS handshake at once; a new "
        "one pushes out the oldest (at most a quarter of the open-file limit).",
        _positive_int,
    ),
    Setting(
        "max_pending_handshakes_per_address",
        32,
        "Of those, how many may come from one client address.",
        _positive_int,
    ),
    Setting("session_hours", 12, "Lifetime of a portal/API login session in hours.", _positive_int),
    Setting(
        "login_free_failures",
        3,
        "Failed sign-ins a username or client address may make before each further one blocks "
        "it for a delay (429 with Retry-After).",
        _positive_int,
    ),
    Setting(
        "login_delay_seconds",
        1,
        "The first sign-in delay, in seconds; it doubles with every further failure.",
        _positive_int,
    ),
    Setting(
        "login_lockout_failures",
        10,
        "Failed sign-ins after which a username or client address is locked out.",
        _positive_int,
    ),
    Setting(
        "login_lockout_seconds",
        900,
        "How long a sign-in lockout lasts (and how long failures are remembered), in seconds.",
        _positive_int,
    ),
    Setting("log_level", "info", "Log level: debug, info, warning or error."),
    Setting("http3", True, "Serve HTTP/3 over QUIC on the same port as HTTPS (UDP).", _boolean),
    Setting(
        "builtin_worker",
        True,
        "Run steps marked run_on: appliance on the appliance itself (false: such steps fail).",
        _boolean,
    ),
    Setting(
        "worker_user",
        None,
        "OS user the built-in worker runs scripts as (empty: the appliance's own user).",
    ),
    Setting(
        "worker_dir",
        None,
        "Directory of the built-in worker's work dirs (default: worker/ in the data dir, or "
        "<data dir>-worker when worker_user is set).",
    ),
    Setting(
        "step_parallelism",
        50,
        "Most targets one deployment step runs on at once (a step's window may lower it).",
        _positive_int,
    ),
    Setting(
        "max_package_mb",
        10240,
        "Largest package the feed accepts, in MiB (413 above; nothing is stored).",
        _positive_int,
    ),
    Setting(
        "max_expanded_mb",
        16384,
        "Most a package may expand to, in MiB (422 at upload above; checked without expanding "
        "a zip, and while reading a tar.gz).",
        _positive_int,
    ),
    Setting(
        "max_expansion_ratio",
        200,
        "Most a package may expand to as a multiple of its size (422 at upload above, once it "
        "expands past 64 MiB): refuses archive bombs.",
        _positive_int,
    ),
    Setting(
        "package_parallelism",
        20,
        "Most targets a package is transferred to at once before a deploy-package step.",
        _positive_int,
    ),
    Setting(
        "delta_max_mb",
        512,
        "Largest package (MiB) for which a binary delta against another version a target holds is "
        "computed; larger ones are sent whole.",
        _positive_int,
    ),
    Setting(
        "shutdown_grace_seconds",
        1,
        "Seconds the server waits for open requests on shutdown.",
        _positive_int,
    ),
)

SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Resolved settings. Build with :func:`load_config`."""

    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def data_path(self) -> Path:
        return Path(self.values["data_dir"])

    def with_overrides(self, **overrides: Any) -> Config:
        merged = dict(self.values)
        merged.update(overrides)
        return Config(merged)


def resolve_data_dir(flag_value: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Data dir from the flag, else ``OCTO_DATA_DIR``, else the per-user default."""
    environ = os.environ if environ is None else environ
    return Path(flag_value or environ.get("OCTO_DATA_DIR") or _default_data_dir()).expanduser()


def _read_config_file(data_dir: Path) -> dict[str, Any]:
    path = data_dir / CONFIG_FILE_NAME
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix or remove it") from None
    unknown = sorted(set(raw) - set(SETTINGS_BY_NAME))
    if unknown:
        raise ConfigError(
            f"{path} names unknown settings: {', '.join(unknown)}",
            hint="see docs/configuration.md for the list",
        )
    return raw


def load_config(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Resolve every setting: flags (not None) > ``OCTO_*`` env > config file > default."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    data_dir = resolve_data_dir(flags.get("data_dir"), environ)
    from_file = _read_config_file(data_dir)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name == "data_dir":
            values["data_dir"] = str(data_dir)
            continue
        if setting.name in flags:
            raw, source = flags[setting.name], f"--{setting.name.replace('_', '-')}"
        elif setting.env_var in environ:
            raw, source = environ[setting.env_var], setting.env_var
        elif setting.name in from_file:
            raw, source = from_file[setting.name], f"{CONFIG_FILE_NAME}:{setting.name}"
        else:
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(str(raw)) if isinstance(raw, str) else raw
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from None
    return Config(values)
