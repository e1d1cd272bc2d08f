"""``octo-agent run``: serve one or several agent identities until SIGTERM/SIGINT.

Listening identity: a comms TLS server on its listen address that trusts exactly the
appliance's comms certificate (trust store = that certificate; allowed = its thumbprint).
Polling identity: a ReconnectingClient to the appliance's polling address, pinned to the same
certificate, presenting the agent's identity; requests arrive down that connection.

Several homes in one process (``run --home H1 --home H2 ...``) each get their own certificate,
listener or connection, mutex, caches and log file, with the same code as a lone agent; it
exists for tests and the benchmark (hundreds of targets without hundreds of interpreters).

On stdout ``run`` prints one line per identity (``listening: NAME HOST:PORT`` or
``polling: NAME HOST:PORT``) and then ``ready``, so a supervisor or a test knows the bound
ports. On SIGTERM/SIGINT it stops accepting, says GOAWAY, cancels running work (killing the
runners' process trees) and exits 0. After staging a self-update it stops the same way (it is
idle) and exits with ``RESTART_FOR_UPDATE`` for its supervisor (agent/supervisor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import logging.handlers
import platform
import signal
import socket
import sys
from collections.abc import Iterator, Sequence

from octo_appliance.agent.builds import RESTART_FOR_UPDATE
from octo_appliance.agent.errors import AgentError
from octo_appliance.agent.handlers import AgentHandlers
from octo_appliance.agent.home import (
    DEFAULT_LISTEN_PORT,
    AgentConfig,
    Home,
    format_address,
    parse_address,
    parse_addresses,
)
from octo_appliance.agent.version import running_version
from octo_appliance.comms import (
    CommsServer,
    CommsSettings,
    Connection,
    IncomingRequest,
    LocalHello,
    ReconnectingClient,
    TrustStore,
    serve,
)
from octo_appliance.comms.descriptors import raise_open_file_limit

log = logging.getLogger("octo_appliance.agent")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(agent)s] %(name)s: %(message)s"
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
#: how long GOAWAY'd connections get before the agent closes them on shutdown
SHUTDOWN_GRACE = 0.0

#: which identity the running code works for (tasks inherit it), for log routing
_current_agent: contextvars.ContextVar[str] = contextvars.ContextVar("octo_agent", default="-")


class AgentRuntime:
    """One agent identity at run time."""

    def __init__(self, home: Home, config: AgentConfig, label: str) -> None:
        self.home = home
        self.config = config
        self.label = label
        self.identity = home.load_identity()
        self.handlers = AgentHandlers(home, config, self.connection_of)
        self.settings = CommsSettings(spool_dir=home.tmp_dir)
        self.server: CommsServer | None = None
        self.client: ReconnectingClient | None = None

    @property
    def hello(self) -> LocalHello:
        return LocalHello(
            role="agent",
            id=self.config.target_id,
            extra={
                "agent_version": running_version(),
                "name": self.config.name,
                "hostname": socket.gethostname(),
                "os": platform.system(),
                **self.handlers.updater.hello(),
            },
        )

    def connection_of(self, request: IncomingRequest) -> Connection | None:
        """A live connection to the appliance that sent ``request`` (to call it back)."""
        if self.client is not None:
            return self.client.connection
        if self.server is not None:
            for conn in self.server.connections:
                if conn.peer_thumbprint == request.peer_thumbprint and conn.accepts_calls:
                    return conn
        return None

    async def start(self) -> str:
        """Start serving; the banner line for this identity."""
        config = self.config
        if config.mode == "listening":
            host, port = parse_address(
                config.listen or f"0.0.0.0:{DEFAULT_LISTEN_PORT}", "listen address"
            )
            appliance = config.comms_thumbprint
            try:
                self.server = await serve(
                    host,
                    port,
                    self.identity,
                    TrustStore([config.comms_certificate]),
                    hello=self.hello,
                    allowed=lambda thumbprint: thumbprint == appliance,
                    handler=self.handlers,
                    settings=self.settings,
                    name="agent listener",
                )
            except OSError as exc:
                raise AgentError(
                    f"agent {config.name!r} cannot listen on {format_address(host, port)}: "
                    f"{exc.strerror or exc}",
                    hint="free that port, or register again with another --listen address",
                ) from None
            log.info("listening on %s for the appliance", format_address(host, self.server.port))
            return f"listening: {config.name} {format_address(host, self.server.port)}"
        addresses = parse_addresses(config.polling_address, "polling address")
        host, port = addresses[0]
        self.client = ReconnectingClient(
            host,
            port,
            self.identity,
            config.comms_thumbprint,
            config.comms_certificate,
            hello=self.hello,
            handler=self.handlers,
            settings=self.settings,
            on_connected=lambda conn: log.info("connected to %s", conn.label),
            alternates=addresses[1:],
        )
        self.client.start()
        where = ",".join(format_address(h, p) for h, p in addresses)
        log.info("polling the appliance at %s", where)
        return f"polling: {config.name} {where}"

    async def stop(self) -> None:
        """Stop accepting, drop the connections, kill what is running."""
        if self.server is not None:
            await self.server.close("the agent is stopping", grace=SHUTDOWN_GRACE)
        if self.client is not None:
            await self.client.stop()
        await self.handlers.host.terminate_all()


def load_runtimes(homes: Sequence[Home]) -> list[AgentRuntime]:
    """Read every home first, so a broken one stops the start before anything listens."""
    runtimes, seen = [], set()
    for home in homes:
        if home.root in seen:
            raise AgentError(f"{home.root} is given twice", hint="give each agent home once")
        seen.add(home.root)
        config = home.require_registered()
        home.ensure()
        _clear_spool(home)
        label = config.name if len(homes) == 1 else f"{config.name}@{home.root.name}"
        runtimes.append(AgentRuntime(home, config, label))
    return runtimes


def _clear_spool(home: Home) -> None:
    """Partial transfers a previous run left behind (a crash mid-upload) are garbage."""
    for leftover in home.tmp_dir.iterdir():
        if leftover.is_file() or leftover.is_symlink():
            leftover.unlink(missing_ok=True)


def run(homes: Sequence[Home], *, log_level: str = "INFO") -> int:
    """The blocking entry point of ``octo-agent run``."""
    runtimes = load_runtimes(homes)
    with _logging(runtimes, log_level):
        log.info(
            "octo-agent %s starting %d agent identit%s",
            running_version(),
            len(runtimes),
            "y" if len(runtimes) == 1 else "ies",
        )
        before, now = raise_open_file_limit()
        if now != before:
            log.info("raised the open-file limit from %d to %d (the hard limit)", before, now)
        return asyncio.run(_main(runtimes))


async def _main(runtimes: list[AgentRuntime]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    exit_code = 0

    def restart_for_update() -> None:
        nonlocal exit_code
        exit_code = RESTART_FOR_UPDATE
        stop.set()

    if len(runtimes) == 1:  # a process hosting several identities is not updated in place
        runtimes[0].handlers.updater.restart = restart_for_update
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[AgentRuntime] = []
    try:
        for runtime in runtimes:
            context = contextvars.copy_context()
            context.run(_current_agent.set, runtime.label)
            banner = await loop.create_task(runtime.start(), context=context)
            started.append(runtime)
            print(banner, flush=True)
        print("ready", flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        await asyncio.gather(*(r.stop() for r in started), return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped" if exit_code == 0 else "stopped to start the new agent build")
    return exit_code


class _Tag(logging.Filter):
    """Stamp each record with the identity whose code emitted it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.agent = _current_agent.get()
        return True


class _Only(logging.Filter):
    """A home's log file gets its own identity's records and the process-wide ones."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "agent", "-") in (self.label, "-")


@contextlib.contextmanager
def _logging(runtimes: Sequence[AgentRuntime], level: str) -> Iterator[None]:
    root = logging.getLogger()
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(_Tag())
    handlers.append(console)
    for runtime in runtimes:
        file = logging.handlers.RotatingFileHandler(
            runtime.home.log_file,
            maxBytes=LOG_MAX_BYTES,
            backupCount=LOG_BACKUPS,
            encoding="utf-8",
        )
        file.addFilter(_Tag())
        if len(runtimes) > 1:
            file.addFilter(_Only(runtime.label))
        handlers.append(file)
    previous = root.level
    root.setLevel(level.upper())
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(previous)
