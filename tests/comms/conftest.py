"""Fixtures for the comms tests: identities, fast settings, and a listening agent on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.comms import (
    CommsServer,
    CommsSettings,
    Connection,
    Handler,
    Identity,
    IncomingRequest,
    LocalHello,
    TrustStore,
    connect,
    generate_identity,
    serve,
)
from octo_appliance.comms.framing import FrameType

from .rawpeer import RawPeer, raw_connect

APPLIANCE_HELLO = LocalHello(role="appliance", id="appliance-test")
AGENT_HELLO = LocalHello(role="agent", id="web01", extra={"agent_version": "0.1.0"})


@dataclass(frozen=True)
class Identities:
    appliance: Identity
    agent: Identity
    stranger: Identity


@pytest.fixture(scope="session")
def ids() -> Identities:
    return Identities(
        appliance=generate_identity("appliance", ["localhost", "127.0.0.1"]),
        agent=generate_identity("agent-web01", ["127.0.0.1"]),
        stranger=generate_identity("stranger"),
    )


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """Where the agent side spools uploads."""
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """Where the appliance side spools downloads."""
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def settings(spool: Path) -> CommsSettings:
    """Short keepalive intervals, with room for a loaded test machine (test_keepalive.py
    overrides them with tighter ones)."""
    return CommsSettings(ping_interval=0.2, dead_after=2.0, handshake_timeout=5, spool_dir=spool)


async def dial_agent(
    port: int, ids: Identities, settings: CommsSettings, identity: Identity | None = None
) -> Connection:
    """The appliance (or ``identity``) dials the agent listening on ``port``, pinning the
    agent's thumbprint: the connection most tests open."""
    return await connect(
        "127.0.0.1",
        port,
        identity or ids.appliance,
        ids.agent.thumbprint,
        hello=APPLIANCE_HELLO,
        settings=settings,
    )


async def dial_pinned(
    port: int, identity: Identity, peer: Identity, hello: LocalHello, **kwargs: Any
) -> Connection:
    """``identity`` dials 127.0.0.1:``port`` pinning ``peer``'s certificate itself (not only
    its thumbprint); ``kwargs`` go to :func:`connect` (handler, settings)."""
    return await connect(
        "127.0.0.1", port, identity, peer.thumbprint, peer.cert_pem, hello=hello, **kwargs
    )


async def appliance_peer(port: int, ids: Identities) -> RawPeer:
    """A hand-driven appliance side, past the hello exchange with the agent on ``port``."""
    peer = await raw_connect(port, ids.appliance)
    peer.send_hello(role="appliance")
    assert (await peer.read()).type is FrameType.HELLO
    return peer


@dataclass
class Listening:
    """A listening agent (the server) and the appliance connections dialed to it."""

    server: CommsServer
    trust: TrustStore
    ids: Identities
    settings: CommsSettings
    conns: list[Connection] = field(default_factory=list)

    async def dial(
        self,
        identity: Identity | None = None,
        *,
        handler: Handler | None = None,
        hello: LocalHello = APPLIANCE_HELLO,
        settings: CommsSettings | None = None,
    ) -> Connection:
        conn = await connect(
            "127.0.0.1",
            self.server.port,
            identity or self.ids.appliance,
            self.ids.agent.thumbprint,
            hello=hello,
            handler=handler,
            settings=settings or self.settings,
        )
        self.conns.append(conn)
        return conn


StartAgent = Callable[..., Awaitable[Listening]]


@pytest.fixture
async def start_agent(ids: Identities, settings: CommsSettings) -> AsyncIterator[StartAgent]:
    """``await start_agent(handler, **serve_kwargs)``: an agent listening on an ephemeral port
    that trusts the appliance identity; everything is closed after the test."""
    started: list[Listening] = []

    async def start(handler: Handler | None = None, **kwargs: Any) -> Listening:
        trust = TrustStore([ids.appliance.cert_pem])
        server = await serve(
            "127.0.0.1",
            0,
            ids.agent,
            trust,
            hello=AGENT_HELLO,
            handler=handler,
            settings=kwargs.pop("settings", settings),
            **kwargs,
        )
        listening = Listening(server, trust, ids, settings)
        started.append(listening)
        return listening

    yield start
    for listening in started:
        for conn in listening.conns:
            conn.close()
            await conn.wait_closed()
        await listening.server.close()


@dataclass
class Watched:
    """A raw appliance peer past the hello, and the methods the agent's handler was called
    with (it answers "ok"): for tests that break the protocol by hand."""

    agent: Listening
    peer: RawPeer
    called: list[str]


@pytest.fixture
async def watched(start_agent: StartAgent, ids: Identities) -> Watched:
    called: list[str] = []

    async def handler(request: IncomingRequest) -> Any:
        called.append(request.method)
        return "ok"

    agent = await start_agent(handler)
    return Watched(agent, await appliance_peer(agent.server.port, ids), called)
