"""The appliance's state: settings, database, vault and plugins, opened once per process.

:func:`open_appliance` is where a first start initialises an empty data dir (master key, kept
outside the data dir; schema, the ``admin`` user and the Administrators team); later starts
reuse all of it (a data dir older than the build-signing key gets that key at its next start).
The CLI commands that work beside a running server (``api-key create``) open
it the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import peewee

from octo_appliance.config import Config
from octo_appliance.db import Team, TeamMember, TeamRole, User
from octo_appliance.db.connection import open_database, write_transaction
from octo_appliance.db.migrations import current_version, latest_version, migrate, serialise
from octo_appliance.db.reconnect import ReconnectingPostgresqlDatabase
from octo_appliance.nodes.registry import check_master_key
from octo_appliance.plugins import Plugins, load_plugins
from octo_appliance.security.passwords import generate_password, hash_password
from octo_appliance.security.permissions import ADMINISTRATORS_TEAM, PrincipalCache
from octo_appliance.security.throttle import LoginThrottle, ThrottlePolicy
from octo_appliance.vault import Vault
from octo_appliance.vault.keys import open_keyring

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from octo_appliance.builds.runner import RunnerBuild
    from octo_appliance.builds.serving import AgentBuilds
    from octo_appliance.certificate import ServerCertificate
    from octo_appliance.engine.agent_updates import AgentUpdates
    from octo_appliance.engine.tasks import TaskEngine
    from octo_appliance.feed.reader import PackageFeed
    from octo_appliance.nodes.service import NodeService
    from octo_appliance.transports.network import AgentNetwork
    from octo_appliance.transports.relay import CallRelay

ADMIN_USERNAME = "admin"
#: ``(schema version found, version this code migrates to)`` -> the backup written, if any
BeforeUpgrade = Callable[[int, int], "Path | None"]
ADMIN_PASSWORD_ENV = "OCTO_ADMIN_PASSWORD"


@dataclass
class InitReport:
    """What a start created, so the CLI can say it (the password only once)."""

    created_key: bool = False
    #: the key file (None: OCTO_MASTER_KEY gave the key)
    key_file: Path | None = None
    #: where this start moved the key from (a data dir of an older version)
    key_moved_from: Path | None = None
    migrations: list[int] = field(default_factory=list)
    #: the backup taken before this start migrated the schema (None: no upgrade, or none taken)
    upgrade_backup: Path | None = None
    admin_password: str | None = None
    admin_password_generated: bool = False


@dataclass
class Appliance:
    config: Config
    db: peewee.Database
    vault: Vault
    plugins: Plugins
    principal_cache: PrincipalCache = field(default_factory=PrincipalCache)
    #: called (from any thread) after every change committed through the API, security
    #: changes included: the API's answer cache (``api/response_cache.py``) empties itself
    change_listeners: list[Callable[[], None]] = field(default_factory=list)
    _limiter: anyio.CapacityLimiter | None = None
    #: set by :mod:`octo_appliance.background` while the server runs
    task_engine: TaskEngine | None = None
    agent_network: AgentNetwork | None = None
    #: calls across nodes, and live task logs from other nodes (PostgreSQL only)
    call_relay: CallRelay | None = None
    agent_updates: AgentUpdates | None = None
    #: this node's membership in the node registry (octo_appliance/nodes/), while serving
    node: NodeService | None = None
    #: called (from any thread) after a commit that added, changed or removed targets
    target_listeners: list[Callable[[], None]] = field(default_factory=list)

    _runner: RunnerBuild | None = None
    _agent_builds: AgentBuilds | None = None
    _signing_key: Ed25519PrivateKey | None = None
    _certificate: ServerCertificate | None = None
    _feed: PackageFeed | None = None
    _login_throttle: LoginThrottle | None = None

    @property
    def feed(self) -> PackageFeed:
        """The built-in package feed (synchronous: use it from worker threads)."""
        if self._feed is None:
            from octo_appliance.feed.reader import PackageFeed

            self._feed = PackageFeed(self.vault, self.files_root)
        return self._feed

    @property
    def login_throttle(self) -> LoginThrottle:
        """Failed sign-in counters of this node (see :mod:`octo_appliance.security.throttle`)."""
        if self._login_throttle is None:
            self._login_throttle = LoginThrottle(
                ThrottlePolicy(
                    free_failures=self.config.login_free_failures,
                    delay_seconds=self.config.login_delay_seconds,
                    lockout_failures=self.config.login_lockout_failures,
                    lockout_seconds=self.config.login_lockout_seconds,
                )
            )
        return self._login_throttle

    def runner_build(self) -> RunnerBuild:
        """The runner zipapp this appliance serves (built once per process)."""
        if self._runner is None:
            from octo_appliance.builds.runner import prepare_runner

            self._runner = prepare_runner(self.data_dir)
        return self._runner

    @property
    def agent_builds(self) -> AgentBuilds:
        """The octo-agent builds this appliance serves (embedded, or built and cached)."""
        if self._agent_builds is None:
            from octo_appliance.builds.agent import default_cache_dir
            from octo_appliance.builds.serving import AgentBuilds

            cache_dir = self.config.agent_build_dir
            self._agent_builds = AgentBuilds(
                Path(cache_dir).expanduser() if cache_dir else default_cache_dir(),
                build_on_request=self.config.agent_build_on_request,
            )
        return self._agent_builds

    def signing_key(self) -> Ed25519PrivateKey:
        """The Ed25519 key that signs build manifests (made and sealed on first use)."""
        if self._signing_key is None:
            from octo_appliance.builds.signing import load_or_create_signing_key

            self._signing_key = load_or_create_signing_key(self.vault, self.files_root)
        return self._signing_key

    def server_certificate(self) -> ServerCertificate:
        """The certificate of HTTPS and agent comms (generated on first use)."""
        if self._certificate is None:
            from octo_appliance.certificate import load_or_create_certificate

            self._certificate = load_or_create_certificate(self.config, self.vault.ring)
        return self._certificate

    def targets_changed(self) -> None:
        for listener in self.target_listeners:
            listener()

    def worker_limiter(self) -> anyio.CapacityLimiter:
        """The shared cap on threads doing database work for requests.

        Small on purpose: with dozens of threads fighting over the interpreter lock, requests
        queue behind thread switches and throughput falls (measured: 40 threads about half
        the throughput of 4). Created on first use, inside the running event loop.
        """
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.config.worker_threads)
        return self._limiter

    @property
    def data_dir(self) -> Path:
        return self.config.data_path

    @property
    def files_root(self) -> Path:
        """Where the sealed files every node must reach live (packages, the signing key):
        ``shared_dir`` when several nodes share one, else the data dir (docs/ha.md)."""
        return self.config.shared_path

    def security_changed(self) -> None:
        """Users, teams, grants or keys changed: forget cached principals (and the answers
        cached for them)."""
        self.principal_cache.clear()
        self.data_changed()

    def data_changed(self) -> None:
        """A change was committed through the API: tell whoever keeps answers derived from it."""
        for listener in self.change_listeners:
            listener()

    def close(self) -> None:
        if isinstance(self.db, ReconnectingPostgresqlDatabase):
            self.db.close_all()  # the worker threads' connections too
        elif not self.db.is_closed():
            self.db.close()


def ensure_data_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _ensure_admin(environ: dict[str, str] | os._Environ[str], report: InitReport) -> None:
    if User.select().exists():
        return
    password = environ.get(ADMIN_PASSWORD_ENV) or ""
    if not password:
        password = generate_password()
        report.admin_password_generated = True
    report.admin_password = password
    admin = User.create_new(
        username=ADMIN_USERNAME,
        display_name="Administrator",
        password_hash=hash_password(password),
    )
    team = Team.get_or_none(Team.name == ADMINISTRATORS_TEAM) or Team.create_new(
        name=ADMINISTRATORS_TEAM, description="Built-in: full control of the appliance."
    )
    TeamRole.create_new(team=team, role="administrator", environments=[], projects=[])
    TeamMember.create_new(team=team, user=admin)


def open_appliance(
    config: Config,
    *,
    initialise: bool = True,
    extra_plugins: Iterable[object] = (),
    environ: dict[str, str] | None = None,
    before_upgrade: BeforeUpgrade | None = None,
) -> tuple[Appliance, InitReport]:
    """Open (and on first start, initialise) the appliance described by ``config``.

    ``before_upgrade(have, latest)`` runs before the schema of an existing database is
    migrated to a newer version (the commands pass the automatic backup of
    :mod:`octo_appliance.backup.upgrade`; this layer cannot import it) and returns what it
    wrote.
    """
    env = os.environ if environ is None else environ
    report = InitReport()
    data_dir = config.data_path
    if initialise:
        ensure_data_dir(data_dir)
    key = open_keyring(data_dir, config.master_key_file, create=initialise, environ=env)
    ring, report.created_key = key.ring, key.created
    report.key_file, report.key_moved_from = key.path, key.moved_from
    plugins = load_plugins(config, extra_plugins=extra_plugins)
    db = open_database(config.database, data_dir, connect_timeout=config.database_connect_timeout)
    have, latest = current_version(db), latest_version()
    if before_upgrade is not None and 0 < have < latest:
        report.upgrade_backup = before_upgrade(have, latest)
    report.migrations = migrate(db)
    if initialise:  # another node's key: say so before a sealed file fails to open
        check_master_key(db, ring.current.key_id, float(config.node_dead_after_seconds))
        with write_transaction(db):
            serialise(db)  # nodes starting at once on an empty database make one admin
            _ensure_admin(env, report)
    appliance = Appliance(config, db, Vault(ring), plugins)
    if initialise:
        appliance.signing_key()  # made at the first start (older data dirs: here, once)
    return appliance, report
