"""The appliance's side of agent comms: its identity, who it trusts, and its connections.

One object per appliance process. It runs the polling listener (agents dial in and wait for
requests), keeps one connection per listening agent (opened on first use, reused), answers
the calls agents make to the appliance (``runner.fetch``, ``plugin.fetch``), and drops
connections of targets that stop being trusted (deleted or disabled) as soon as trust is
reloaded.

A polling session belongs to the target its certificate is registered to: logs name that
target, never the name the agent gives in HELLO (a mismatch is logged), and a certificate
registered to a listening target cannot open a polling session (refused, and logged naming
the target). See docs/security.md, "Trust-boundary logging".

It knows nothing of the database: whoever starts it passes ``load_trust``, a function that
returns the targets to trust with their certificates (run in a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from octo_appliance import __version__
from octo_appliance.agent import contract
from octo_appliance.builds.runner import RunnerBuild
from octo_appliance.comms import (
    CommsServer,
    CommsSettings,
    Connection,
    Identity,
    IncomingRequest,
    LocalHello,
    PeerVerdict,
    PollingHub,
    TrustStore,
    connect,
    serve,
)
from octo_appliance.comms.call_types import EventCallback, Response
from octo_appliance.comms.descriptors import DescriptorBudget
from octo_appliance.comms.errors import CallFailed
from octo_appliance.plugin_loading.bundles import BundleStore
from octo_appliance.transports.agent_build import OfferedBuild
from octo_appliance.transports.base import TargetAddress
from octo_appliance.transports.update_gate import UpdateGate, notice_to

log = logging.getLogger("octo_appliance.agents")

#: returns every target to trust, each with its thumbprint and certificate
TrustLoader = Callable[[], Sequence[TargetAddress]]
#: told of every agent connection: the target and what its agent said in HELLO
HelloObserver = Callable[[TargetAddress, Mapping[str, Any]], None]


class AgentNetwork:
    def __init__(
        self,
        identity: Identity,
        runner: RunnerBuild,
        load_trust: TrustLoader,
        *,
        settings: CommsSettings | None = None,
        pickup_timeout: float = 120.0,
        bundles: BundleStore | None = None,
        agent_build: OfferedBuild | None = None,
        update_wait: float = 300.0,
    ) -> None:
        self.identity = identity
        self.runner = runner
        #: the plugin command bundles agents may fetch (``plugin.fetch``)
        self.bundles = bundles
        #: the agent build agents update to (None: this appliance offers none)
        self.agent_build = agent_build
        #: calls to an agent that updates itself wait here (transports/update_gate.py)
        self.gate = UpdateGate(update_wait)
        self.hello_observers: list[HelloObserver] = []
        self.settings = settings or CommsSettings()
        self.pickup_timeout = pickup_timeout
        self.hello = LocalHello(
            role="appliance", id=identity.thumbprint, extra={"version": __version__}
        )
        self.trust = TrustStore()
        self.hub = PollingHub()
        self.polling_server: CommsServer | None = None
        self._load_trust = load_trust
        #: trusted targets by certificate thumbprint (read on the loop at every handshake)
        self._agents: dict[str, TargetAddress] = {}
        self._listening: dict[str, Connection] = {}
        self._dialing: dict[str, asyncio.Lock] = {}
        #: the reload that runs now (targets changed meanwhile: one more after it)
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False
        self.descriptors = DescriptorBudget("polling agents")

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, polling_host: str, polling_port: int) -> None:
        await self.reload_trust()
        self.polling_server = await serve(
            polling_host,
            polling_port,
            self.identity,
            self.trust,
            hello=self.hello,
            allowed=self.polling_verdict,
            on_connection=self._attach,
            handler=self.handle,
            settings=self.settings,
            name="polling listener",
        )
        log.info("polling listener on %s:%d", polling_host, self.polling_server.port)

    async def stop(self) -> None:
        await self.hub.close()
        if self.polling_server is not None:
            await self.polling_server.close("the appliance is shutting down")
        for conn in list(self._listening.values()):
            conn.close("the appliance is shutting down")
        self._listening.clear()

    @property
    def polling_port(self) -> int:
        return self.polling_server.port if self.polling_server is not None else 0

    # -- trust ---------------------------------------------------------------------------------

    async def reload_trust(self) -> None:
        """Trust exactly the current targets; drop connections of any that left (or of a
        polling session whose target is no longer a polling one)."""
        agents = await run_in_threadpool(self._load_trust)
        self.trust.replace(agent.certificate for agent in agents)
        self._agents = {agent.thumbprint.lower(): agent for agent in agents}
        self.descriptors.check(sum(a.communication_style == "polling" for a in agents))
        for conn in list(self._listening.values()):
            if conn.peer_thumbprint not in self._agents:
                log.warning("dropping connection of %s: no longer trusted", conn.label)
                conn.close("the target was removed or disabled")
        if self.polling_server is not None:
            for conn in list(self.polling_server.connections):
                verdict = self.polling_verdict(conn.peer_thumbprint)
                if not verdict.allowed:
                    log.warning("dropping connection of %s: %s", conn.label, verdict.reason)
                    gone = conn.peer_thumbprint not in self._agents
                    conn.close("the target was removed or disabled" if gone else verdict.reason)

    def polling_verdict(self, thumbprint: str) -> PeerVerdict:
        """May this certificate open a polling session, and as which target."""
        agent = self._agents.get(thumbprint)
        if agent is None:
            return PeerVerdict(False, reason="it is not registered to any enabled target")
        if agent.communication_style != "polling":
            style = agent.communication_style
            return PeerVerdict(
                False,
                reason=f"it is registered to {style} target '{agent.name}' ({agent.id}), "
                f"and a {style} target cannot open a polling session",
            )
        return PeerVerdict(True, name=f"target '{agent.name}'")

    def _attach(self, conn: Connection) -> None:
        agent = self._agents.get(conn.peer_thumbprint)
        claimed = str(conn.peer_hello.get("id", ""))
        if agent is not None and claimed and claimed != agent.id:
            log.warning(
                "%s says in HELLO that it is %r; it is served as the target its certificate "
                "is registered to (%s)",
                conn.label,
                claimed[:100],
                agent.id,
            )
        self.hub.attach(conn)
        if agent is not None:
            self._observe(agent, conn)

    def _observe(self, target: TargetAddress, conn: Connection) -> None:
        for observer in self.hello_observers:
            try:
                observer(target, conn.peer_hello)
            except Exception:  # an observer's bug must not drop the agent's connection
                log.exception("a connection observer failed for %s", conn.label)

    def gated(
        self, thumbprint: str, on_event: EventCallback | None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return self.gate.call(thumbprint, notice_to(on_event))

    def target_by_id(self, target_id: str) -> TargetAddress | None:
        return next((t for t in self._agents.values() if t.id == target_id), None)

    def reload_trust_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread-safe: schedule :meth:`reload_trust` on the network's loop. Changes that
        arrive while a reload runs share one more reload after it: registering 5,000 agents
        is not 5,000 reads of every target."""
        loop.call_soon_threadsafe(self._reload_coalesced)

    def _reload_coalesced(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            return
        self._reloading = asyncio.ensure_future(self._reload_while_changed())

    async def _reload_while_changed(self) -> None:
        self._reload_again = True
        while self._reload_again:
            self._reload_again = False
            try:
                await self.reload_trust()
            except Exception:  # the database may be away: the next change reloads again
                log.exception("reloading the trusted targets failed")

    # -- calls to agents -----------------------------------------------------------------------

    async def listening_connection(self, target: TargetAddress) -> Connection:
        """The open connection to a listening agent, dialled on first use."""
        key = target.thumbprint
        conn = self._listening.get(key)
        if conn is not None and conn.accepts_calls:
            return conn
        lock = self._dialing.setdefault(key, asyncio.Lock())
        async with lock:
            conn = self._listening.get(key)
            if conn is not None and conn.accepts_calls:
                return conn
            host, port = _host_port(target.uri)
            conn = await connect(
                host,
                port,
                self.identity,
                target.thumbprint,
                target.certificate or None,
                hello=self.hello,
                handler=self.handle,
                settings=self.settings,
            )
            self._listening[key] = conn
            conn.add_close_callback(lambda closed: self._forget(key, closed))
            self._observe(target, conn)
            return conn

    async def call_agent(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        *,
        timeout: float,
        pickup_timeout: float,
    ) -> Response:
        """A call straight to an agent, past its update gate (the update coordinator's)."""
        if target.communication_style == "polling":
            return await self.hub.call(
                target.thumbprint, method, params, pickup_timeout=pickup_timeout, timeout=timeout
            )
        conn = await self.listening_connection(target)
        return await conn.call(method, params, timeout=timeout)

    def _forget(self, key: str, conn: Connection) -> None:
        if self._listening.get(key) is conn:
            del self._listening[key]

    # -- calls from agents ---------------------------------------------------------------------

    async def handle(self, request: IncomingRequest) -> Any:
        """Calls agents make to the appliance over the connection they share."""
        if request.method == contract.RUNNER_FETCH:
            version = str(request.params.get("version", ""))
            if version != self.runner.version:
                raise CallFailed(
                    "unknown_runner",
                    f"this appliance serves runner {self.runner.version}, not {version!r}",
                )
            request.respond_with_file(self.runner.path)
            return {"version": self.runner.version, "sha256": self.runner.sha256}
        if request.method == contract.PLUGIN_FETCH:
            sha256 = str(request.params.get("sha256", ""))
            bundle = self.bundles.get(sha256) if self.bundles is not None else None
            if bundle is None:
                raise CallFailed(
                    "unknown_bundle",
                    f"this appliance built no plugin command bundle {sha256[:64]!r}",
                    hint="a bundle is built when a step of its type runs: run the step again",
                )
            request.respond_with_file(bundle.path)
            return {"name": bundle.name, "sha256": bundle.sha256}
        if request.method == contract.AGENT_FETCH:
            build = self.agent_build
            version = str(request.params.get("version", ""))
            if build is None or version != build.version:
                served = build.version if build is not None else "no agent build"
                raise CallFailed(
                    "unknown_build", f"this appliance serves {served}, not agent {version!r}"
                )
            request.respond_with_file(build.path)
            return {"version": build.version}
        raise CallFailed("unknown_method", f"the appliance does not handle {request.method!r}")


def _host_port(uri: str) -> tuple[str, int]:
    """``https://host:port`` (or ``host:port``) of a listening agent."""
    rest = uri.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def spool_dir(data_dir: Path) -> Path:
    path = data_dir / "spool"
    path.mkdir(parents=True, exist_ok=True)
    return path
