"""Admission: connections that never finish TLS are capped, timed out and cheap, a client is
still served during a flood, and a refused handshake is logged once per peer in a burst.

Real sockets on loopback; the flooding connections come from other loopback addresses
(127.0.0.0/8 all reaches this host) so that per-address and per-listener caps can be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from octo_appliance.comms import CommsSettings, Connection, PeerRejected, PeerVerdict
from octo_appliance.comms.admission import HandshakeLimits
from octo_appliance.comms.ratelog import RateLimitedLog

from .conftest import AGENT_HELLO, Identities, Listening, StartAgent
from .rawpeer import refused_burst


async def half_open(
    port: int, source: str, count: int, payload: bytes = b""
) -> list[socket.socket]:
    """``count`` TCP connections from ``source`` that send ``payload`` (or nothing) and wait."""
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((source, 0))
        await loop.sock_connect(sock, ("127.0.0.1", port))
        if payload:
            await loop.sock_sendall(sock, payload)
        socks.append(sock)
    return socks


def client_hello_start(length: int = 60) -> bytes:
    """The first bytes of a real ClientHello: a handshake that started and stalled."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="x")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()[:length]


async def eventually(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"waited {timeout} s for {what}") from None


@pytest.fixture
async def flood() -> AsyncIterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


def limited(settings: CommsSettings, **limits: float) -> CommsSettings:
    return replace(settings, **limits)  # type: ignore[arg-type]


async def capped_agent(
    start_agent: StartAgent, settings: CommsSettings, pending: int, per_address: int
) -> Listening:
    """An agent that admits at most ``pending`` half-done handshakes, ``per_address`` from one
    address."""
    return await start_agent(
        settings=limited(
            settings,
            max_pending_handshakes=pending,
            max_pending_handshakes_per_address=per_address,
        )
    )


async def test_pending_handshakes_are_capped_per_address_and_the_surplus_waits_boundedly(
    start_agent: StartAgent, ids: Identities, settings: CommsSettings, flood: list[socket.socket]
) -> None:
    agent = await start_agent(
        settings=limited(
            settings,
            max_pending_handshakes=64,
            max_pending_handshakes_per_address=8,
            handshake_timeout=1.0,
        )
    )
    admission = agent.server.admission
    flood += await half_open(agent.server.port, "127.0.0.2", 40)
    flood += await half_open(agent.server.port, "127.0.0.2", 40, client_hello_start())
    await eventually(lambda: admission.pending == 8, "the handshakes to be pending")
    assert admission.waiting <= 64

    # a client from another address gets in during the flood
    conn = await agent.dial()
    assert conn.accepts_calls
    assert admission.pending <= 8

    # every flooding connection is closed within bounded time, waiting or not
    await eventually(lambda: admission.pending + admission.waiting == 0, "the flood to end")
    for sock in flood:
        sock.setblocking(True)
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""


async def test_a_burst_of_dials_over_the_per_address_cap_is_served_in_turn(
    start_agent: StartAgent, settings: CommsSettings
) -> None:
    """Many agents behind one address dialling at once (after a restart): newcomers over the
    cap wait for a handshake slot instead of pushing out handshakes in progress."""
    agent = await capped_agent(start_agent, settings, pending=64, per_address=2)

    conns = await asyncio.gather(*(agent.dial() for _ in range(12)))

    assert all(conn.accepts_calls for conn in conns)
    assert agent.server.admission.dropped == 0


async def test_a_newcomer_pushes_out_a_handshake_of_its_address_that_sent_nothing(
    start_agent: StartAgent, settings: CommsSettings, flood: list[socket.socket]
) -> None:
    agent = await start_agent(
        settings=limited(settings, max_pending_handshakes_per_address=2, handshake_timeout=4.0)
    )
    admission = agent.server.admission
    flood += await half_open(agent.server.port, "127.0.0.2", 2)
    await eventually(lambda: admission.pending == 2, "the handshakes to be pending")
    await asyncio.sleep(1.2)  # a quarter of the timeout without a byte: stalled

    flood += await half_open(agent.server.port, "127.0.0.2", 1, client_hello_start())

    await eventually(lambda: admission.dropped == 1, "the stalled one to be pushed out")
    assert admission.pending == 2
    assert admission.waiting == 0


async def test_pending_handshakes_are_capped_per_listener(
    start_agent: StartAgent, ids: Identities, settings: CommsSettings, flood: list[socket.socket]
) -> None:
    agent = await capped_agent(start_agent, settings, pending=16, per_address=8)
    admission = agent.server.admission
    for n in range(10):
        flood += await half_open(agent.server.port, f"127.0.1.{n + 1}", 5)
    await eventually(lambda: admission.dropped >= 34, "the surplus to be dropped")
    assert admission.pending == 16

    conn = await agent.dial()
    assert conn.accepts_calls


async def test_a_stalled_handshake_is_dropped_after_the_timeout(
    start_agent: StartAgent, settings: CommsSettings, flood: list[socket.socket]
) -> None:
    agent = await start_agent(settings=limited(settings, handshake_timeout=0.5))
    admission = agent.server.admission
    flood += await half_open(agent.server.port, "127.0.0.3", 3, client_hello_start())
    await eventually(lambda: admission.pending == 3, "the handshakes to be pending")
    await eventually(lambda: admission.pending == 0, "the stalled handshakes to time out")
    for sock in flood:  # the server closed them
        sock.setblocking(True)
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""


def test_limits_never_exceed_a_quarter_of_the_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = HandshakeLimits(max_pending=10**9, max_pending_per_address=10**9)
    bounded = limits.within_descriptors()
    assert bounded.max_pending <= max(8, soft // 4)
    assert bounded.max_pending_per_address == bounded.max_pending


async def test_a_refused_handshake_is_logged_once_per_peer_in_a_burst(
    start_agent: StartAgent, ids: Identities, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="octo_appliance.comms")
    agent = await start_agent()
    await refused_burst(agent.server.port, "127.0.0.4", ids.stranger, 25)
    await refused_burst(agent.server.port, "127.0.0.5", ids.stranger, 5)

    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    from_4 = [line for line in lines if "127.0.0.4" in line]
    assert len(from_4) == 1, lines
    assert f"presenting certificate {ids.stranger.thumbprint}" in from_4[0]
    assert "its certificate is not trusted here" in from_4[0]
    assert len([line for line in lines if "127.0.0.5" in line]) == 1

    # the rest of the burst is a count, when the window closes
    agent.server.refusals.flush()
    summaries = [
        r.getMessage() for r in caplog.records if "more refused connections" in r.getMessage()
    ]
    assert any("127.0.0.4" in line and ": 24 more" in line for line in summaries), summaries


async def test_a_refusal_after_tls_names_the_reason_and_thumbprint(
    start_agent: StartAgent, ids: Identities, caplog: pytest.LogCaptureFixture
) -> None:
    """A certificate TLS accepted but the listener's verdict refuses (revoked, or registered
    for another purpose) is logged with the verdict's reason."""
    caplog.set_level(logging.INFO, logger="octo_appliance.comms")
    agent: Listening = await start_agent(
        allowed=lambda thumbprint: PeerVerdict(False, reason="it belongs to target 'x'")
    )
    with pytest.raises(PeerRejected, match="it belongs to target 'x'"):
        await agent.dial()
    lines = [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()]
    assert len(lines) == 1
    assert ids.appliance.thumbprint in lines[0] and "it belongs to target 'x'" in lines[0]


async def test_a_connection_is_named_by_the_verdict_not_by_its_hello(
    start_agent: StartAgent, ids: Identities
) -> None:
    agent = await start_agent(allowed=lambda thumbprint: PeerVerdict(True, name="target 'web'"))
    await agent.dial()
    await eventually(lambda: agent.server.connections, "the connection to be admitted")
    (conn,) = agent.server.connections
    assert isinstance(conn, Connection)
    assert conn.peer_name == "target 'web'"
    assert conn.label.startswith("target 'web' (")
    assert AGENT_HELLO.id not in conn.label


async def test_rate_limited_log_summarises_per_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.ratelog")
    limiter = RateLimitedLog(logging.getLogger("test.ratelog"), "events", max_keys=3)
    for n in range(100):
        limiter.note("a", f"a {n}")
    for key in "bcdef":
        limiter.note(key, f"{key} once")
    assert [r.getMessage() for r in caplog.records] == ["a 0", "b once", "c once"]
    limiter.flush()
    messages = [r.getMessage() for r in caplog.records][3:]
    assert messages == [
        "a: 99 more events in the last 60 s (the last: a 99)",
        "3 more events from 3 other sources in the last 60 s, not logged one by one",
    ]
