"""Dead-peer detection, healthy idle connections, and peers that break the wire format."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.comms import (
    CommsError,
    CommsSettings,
    IncomingRequest,
    PeerLost,
)
from octo_appliance.comms.framing import FrameType

from .conftest import Identities, StartAgent, Watched, dial_agent
from .rawpeer import RawPeer, raw_server


@pytest.fixture
def settings(spool: Path) -> CommsSettings:
    """Tight intervals: these tests wait for the keepalive on purpose."""
    return CommsSettings(ping_interval=0.1, dead_after=0.6, handshake_timeout=5, spool_dir=spool)


def test_default_settings_detect_a_dead_peer_within_30_seconds() -> None:
    settings = CommsSettings()

    assert settings.dead_after + settings.keepalive_tick <= 30
    assert settings.ping_interval * 3 <= settings.dead_after  # several pings before "dead"


def test_inconsistent_intervals_are_refused() -> None:
    with pytest.raises(CommsError, match="below dead_after"):
        CommsSettings(ping_interval=20, dead_after=10)


async def test_silent_peer_is_declared_dead_and_in_flight_calls_fail(
    ids: Identities, settings: CommsSettings
) -> None:
    """The raw agent takes the request, then neither answers nor PONGs: a hung host."""
    got_request = asyncio.Event()

    async def hung(peer: RawPeer) -> None:
        peer.send_hello()
        await peer.read()  # HELLO
        await peer.read()  # the REQUEST; from here on, silence
        got_request.set()
        await asyncio.sleep(30)

    server = await raw_server(ids.agent, hung)
    try:
        conn = await dial_agent(server.port, ids, settings)
        calls = [asyncio.create_task(conn.call("deploy")) for _ in range(3)]
        # The stated bound: within the dead interval (plus a check tick), with slack for CI.
        async with asyncio.timeout(settings.dead_after * 5):
            results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await server.close()

    assert got_request.is_set()
    for result in results:
        assert isinstance(result, PeerLost)
        assert "keepalive limit 0.6 s" in result.message
        assert "agent" in result.message
    assert conn.is_closed
    with pytest.raises(PeerLost, match="is closed"):
        await conn.call("again")


async def test_idle_healthy_connection_stays_up_across_many_dead_intervals(
    start_agent: StartAgent,
) -> None:
    async def handler(request: IncomingRequest) -> Any:
        return "alive"

    agent = await start_agent(handler)
    conn = await agent.dial()

    await asyncio.sleep(agent.settings.dead_after * 3)

    assert not conn.is_closed
    assert (await conn.call("still-there")).result == "alive"


async def test_both_ends_turn_on_tcp_keepalive(start_agent: StartAgent) -> None:
    agent = await start_agent(None)
    conn = await agent.dial()
    (server_side,) = agent.server.connections

    for side in (conn, server_side):
        sock = side._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10


async def test_long_handler_without_events_is_not_mistaken_for_a_dead_peer(
    start_agent: StartAgent,
) -> None:
    async def handler(request: IncomingRequest) -> Any:
        await asyncio.sleep(1.5)
        return "finished"

    agent = await start_agent(handler)
    conn = await agent.dial()

    assert (await conn.call("slow")).result == "finished"


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(struct.pack(">BBII", 5, 0, 1, 1024 * 1024 + 1), id="oversized-frame"),
        pytest.param(struct.pack(">BBII", 99, 0, 1, 0), id="unknown-type"),
        pytest.param(struct.pack(">BBII", FrameType.PING, 0, 7, 0), id="ping-on-a-stream"),
        pytest.param(struct.pack(">BBII", FrameType.REQUEST, 0, 1, 3) + b"{x]", id="bad-json"),
    ],
)
async def test_protocol_violation_closes_the_connection_with_an_error(
    watched: Watched, garbage: bytes
) -> None:
    peer, called = watched.peer, watched.called

    peer.writer.write(garbage)
    error = await asyncio.wait_for(peer.read(), 5)

    assert error.type is FrameType.ERROR
    assert error.json()["code"] == "protocol_error"
    assert await asyncio.wait_for(peer.read_until_eof(), 5) == b""
    assert called == []


async def test_peer_error_frame_fails_calls_with_its_message(
    ids: Identities, settings: CommsSettings
) -> None:
    async def complaining(peer: RawPeer) -> None:
        peer.send_hello()
        await peer.read()
        await peer.read()
        peer.send(FrameType.ERROR, 0, {"code": "protocol_error", "message": "you sent junk"})
        await peer.read_until_eof()

    server = await raw_server(ids.agent, complaining)
    try:
        conn = await dial_agent(server.port, ids, settings)
        with pytest.raises(PeerLost, match="you sent junk"):
            await conn.call("x")
    finally:
        await server.close()
