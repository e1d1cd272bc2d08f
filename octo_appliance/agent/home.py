"""The agent home ``H``: one directory holds everything one agent identity owns.

::

    H/agent.json                  configuration (written atomically, mode 0600)
    H/identity/cert.pem           the agent's self-signed certificate (public)
    H/identity/key.pem            its private key (mode 0600, directory 0700)
    H/work/<task id>-<n>/         a fresh work dir per runner.run
    H/cache/<sha256>              packages by content hash; H/cache/index.json: name, length,
                                  package id and version of each
    H/applications/               where the runner extracts deployed packages
    H/journal.json                the runner's deployment journal (written by the runner, which
                                  also applies retention to applications/ and cache/)
    H/runners/octo-runner-<v>.pyz runner builds fetched from the appliance (SHA-256 checked)
    H/logs/agent.log              rotating log
    H/builds/                     agent builds fetched for a self-update, and state.json: the
                                  current, trial and last failed build (agent/builds.py)
    H/tmp/                        comms spool: uploads and downloads land here first, so a
                                  verified file is moved into cache/ or runners/ by rename

Everything is created 0700: work dirs may hold deployed secrets (config files after
substitution) and the cache holds package content.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from octo_appliance.agent.errors import AgentError
from octo_appliance.comms import Identity, generate_identity, load_identity, normalize_thumbprint
from octo_appliance.comms.errors import IdentityError
from octo_appliance.exceptions import ConfigError
from octo_appliance.filesystem.durable import write_atomic

CONFIG_FORMAT = 1
Mode = Literal["listening", "polling"]
MODES: tuple[Mode, ...] = ("listening", "polling")
DEFAULT_LISTEN_PORT = 10933
DEFAULT_POLLING_PORT = 10943
#: listen hosts that bind every address, so they name no address to dial
WILDCARD_HOSTS = ("0.0.0.0", "::", "")

_ADDRESS = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>\d{1,5})$")


def parse_address(value: str, what: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); port 0 means "any free port"."""
    match = _ADDRESS.match(value.strip())
    port = int(match["port"]) if match else -1
    if match is None or not 0 <= port <= 65535:
        raise ConfigError(
            f"{what} {value!r} is not HOST:PORT",
            hint="write it like 0.0.0.0:10933, web-01.example.com:10943 or [::1]:10933",
        )
    return match["v6"] or match["host"], port


def parse_addresses(value: str, what: str = "address") -> list[tuple[str, int]]:
    """One ``HOST:PORT`` or several separated by commas (the nodes of one appliance, or one
    load-balanced address: docs/ha.md, "Calls across nodes")."""
    parts = [part.strip() for part in value.split(",")]
    if not any(parts) or not all(parts):
        raise ConfigError(
            f"{what} {value!r} is not HOST:PORT[,HOST:PORT...]",
            hint="write it like node1.example.com:10943,node2.example.com:10943",
        )
    return [parse_address(part, what) for part in parts]


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class AgentConfig:
    """What ``agent.json`` holds. Registration fields are empty until ``register`` succeeds.

    ``api_*`` pin the appliance's HTTPS certificate (used by register/deregister);
    ``comms_*`` pin the certificate the appliance presents on the agent wire (the register
    response names it; it is usually the same certificate). ``signing_public_key`` checks the
    signature of every build manifest (:mod:`octo_appliance.builds.manifest`); empty when the
    appliance registered the agent before it signed builds.
    """

    name: str
    mode: Mode
    listen: str = ""
    public_host: str = ""
    polling_address: str = ""
    server_url: str = ""
    api_thumbprint: str = ""
    api_certificate: str = ""
    comms_thumbprint: str = ""
    comms_certificate: str = ""
    #: the appliance's Ed25519 key that signs agent builds (PEM), given at registration
    signing_public_key: str = ""
    target_id: str = ""
    environments: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    registered_at: str = ""
    format: int = CONFIG_FORMAT

    @property
    def is_registered(self) -> bool:
        return bool(self.target_id and self.comms_thumbprint)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str) -> AgentConfig:
        if not isinstance(data, dict):
            raise _broken(source, "it is not a JSON object")
        if data.get("format", CONFIG_FORMAT) != CONFIG_FORMAT:
            raise _broken(source, f"format {data.get('format')!r} is not {CONFIG_FORMAT}")
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        for key in ("name", "mode"):
            if not isinstance(values.get(key), str) or not values[key]:
                raise _broken(source, f"{key!r} is missing")
        for key, value in values.items():
            expected = list if key in ("environments", "roles") else int if key == "format" else str
            if not isinstance(value, expected):
                raise _broken(source, f"{key!r} must be a {expected.__name__}")
        config = cls(**values)
        config.validate(source)
        return config

    def validate(self, source: str = "agent.json") -> None:
        if self.mode not in MODES:
            raise _broken(source, f"mode {self.mode!r} is neither listening nor polling")
        if self.mode == "listening" and self.listen:
            parse_address(self.listen, "listen address")
        if self.mode == "polling" and self.polling_address:
            parse_addresses(self.polling_address, "polling address")
        for key in ("api_thumbprint", "comms_thumbprint"):
            value = getattr(self, key)
            if value:
                try:
                    setattr(self, key, normalize_thumbprint(value))
                except IdentityError:
                    raise _broken(source, f"{key!r} is not a SHA-256 thumbprint") from None

    def without_registration(self) -> AgentConfig:
        """The same agent, no longer tied to an appliance (after deregister)."""
        return AgentConfig(
            name=self.name,
            mode=self.mode,
            listen=self.listen,
            public_host=self.public_host,
            polling_address=self.polling_address,
        )


def _broken(source: str, why: str) -> ConfigError:
    return ConfigError(
        f"{source} is not a valid agent configuration: {why}",
        hint="register the agent again (octo-agent register --force ...) to rewrite it",
    )


class Home:
    """Paths and files of one agent home."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.config_file = self.root / "agent.json"
        self.identity_dir = self.root / "identity"
        self.cert_file = self.identity_dir / "cert.pem"
        self.key_file = self.identity_dir / "key.pem"
        self.work_dir = self.root / "work"
        self.cache_dir = self.root / "cache"
        self.applications_dir = self.root / "applications"
        self.journal_file = self.root / "journal.json"
        self.runners_dir = self.root / "runners"
        self.logs_dir = self.root / "logs"
        self.log_file = self.logs_dir / "agent.log"
        self.tmp_dir = self.root / "tmp"
        self.builds_dir = self.root / "builds"

    def __repr__(self) -> str:
        return f"Home({str(self.root)!r})"

    def ensure(self) -> None:
        """Create the layout (0700 directories); harmless when it exists. The journal file is
        the runner's to create (its format is the runner's)."""
        for path in (
            self.root,
            self.identity_dir,
            self.work_dir,
            self.cache_dir,
            self.applications_dir,
            self.runners_dir,
            self.logs_dir,
            self.tmp_dir,
            self.builds_dir,
        ):
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise AgentError(
                    f"cannot create {path}: {exc.strerror}",
                    hint="choose a --home this user may write, or create it for this user",
                ) from None

    # -- identity ------------------------------------------------------------------------

    def has_identity(self) -> bool:
        return self.cert_file.exists() or self.key_file.exists()

    def create_identity(self, *, force: bool = False) -> Identity:
        if self.has_identity() and not force:
            raise AgentError(
                f"{self.identity_dir} already holds a certificate",
                hint="pass --force to replace it (the appliance must then be told the new "
                "thumbprint: register again)",
            )
        self.ensure()
        # A unique subject: OpenSSL finds a trust anchor by subject name, so an appliance
        # trusting many agents whose certificates share one name checks against the wrong one.
        identity = generate_identity(f"octo-agent-{secrets.token_hex(8)}")
        identity.save(self.cert_file, self.key_file)
        return identity

    def load_identity(self) -> Identity:
        if not self.has_identity():
            raise AgentError(
                f"{self.root} has no agent certificate yet",
                hint=f"create one: octo-agent new-certificate --home {self.root}",
            )
        return load_identity(self.cert_file, self.key_file)

    def load_or_create_identity(self) -> Identity:
        return self.load_identity() if self.has_identity() else self.create_identity()

    # -- configuration -------------------------------------------------------------------

    def load_config(self) -> AgentConfig | None:
        """The configuration, or None when the home has none yet."""
        try:
            text = self.config_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(
                f"cannot read {self.config_file}: {exc.strerror}",
                hint="check that this user may read the agent home",
            ) from None
        try:
            data = json.loads(text)
        except ValueError:
            raise _broken(str(self.config_file), "it is not JSON") from None
        return AgentConfig.from_json(data, str(self.config_file))

    def require_registered(self) -> AgentConfig:
        config = self.load_config()
        if config is None or not config.is_registered:
            raise AgentError(
                f"the agent in {self.root} is not registered with an appliance",
                hint=f"register it first: octo-agent register --home {self.root} --server ...",
            )
        return config

    def save_config(self, config: AgentConfig) -> None:
        config.validate(str(self.config_file))
        self.ensure()
        text = json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n"
        write_atomic(self.config_file, text.encode("utf-8"), mode=0o600)
