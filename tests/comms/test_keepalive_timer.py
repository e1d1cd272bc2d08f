"""One keepalive timer per event loop: connections get no keepalive task of their own, idle
ones still ping and stay up, a silent one among them is still declared dead, and on a
healthy idle connection only the dialer pings."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.comms import CommsSettings, IncomingRequest, PeerLost
from octo_appliance.comms.framing import CONTROL_STREAM, Frame, FrameType, encode_frame
from octo_appliance.comms.keepalive import KeepaliveScheduler

from .conftest import Identities, StartAgent, appliance_peer, dial_agent
from .rawpeer import RawPeer, raw_server


@pytest.fixture
def settings(spool: Path) -> CommsSettings:
    """Tight intervals: these tests wait for the keepalive on purpose."""
    return CommsSettings(ping_interval=0.1, dead_after=0.6, handshake_timeout=5, spool_dir=spool)


async def _answer(request: IncomingRequest) -> Any:
    return "alive"


async def test_connections_on_one_loop_share_its_keepalive_and_a_silent_one_is_found(
    start_agent: StartAgent, ids: Identities, settings: CommsSettings
) -> None:
    agent = await start_agent(_answer)
    first = await agent.dial()
    before = len(asyncio.all_tasks())
    more = [await agent.dial() for _ in range(20)]
    # both ends are on this loop: a reader task each, and no keepalive task
    assert len(asyncio.all_tasks()) - before <= 2 * len(more)
    assert len(KeepaliveScheduler.for_loop(asyncio.get_running_loop())) >= 2 * 21

    async def hung(peer: RawPeer) -> None:
        peer.send_hello()
        await peer.read()  # HELLO; from here on, silence (not even PONGs)
        await asyncio.sleep(30)

    server = await raw_server(ids.agent, hung)
    try:
        silent = await dial_agent(server.port, ids, settings)
        async with asyncio.timeout(settings.dead_after * 5):
            reason = await silent.wait_closed()
        await asyncio.sleep(settings.dead_after)  # the healthy ones outlive two dead intervals
    finally:
        await server.close()

    assert isinstance(reason, PeerLost)
    assert "keepalive limit 0.6 s" in reason.message
    for conn in [first, *more]:
        assert not conn.is_closed
        assert (await conn.call("still-there")).result == "alive"


async def _watch(
    peer: RawPeer, seconds: float, ping_every: float | None
) -> collections.Counter[FrameType]:
    """The frames ``peer`` got in ``seconds`` (PINGs answered), PINGing every ``ping_every``."""
    got: collections.Counter[FrameType] = collections.Counter()

    async def read() -> None:
        while True:
            frame = await peer.read(skip_pings=False)
            got[frame.type] += 1
            if frame.type is FrameType.PING:
                peer.send(FrameType.PONG, CONTROL_STREAM, frame.payload)

    reader = asyncio.create_task(read())
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if ping_every is not None:
            peer.writer.write(_ping())
        await asyncio.sleep(ping_every or seconds)
    reader.cancel()
    return got


def _ping() -> bytes:
    return encode_frame(Frame(FrameType.PING, CONTROL_STREAM, b"p"))


async def test_the_accepting_side_pings_only_a_dialer_that_does_not(
    start_agent: StartAgent, ids: Identities, spool: Path
) -> None:
    # a wide margin: the accepting side waits one check (0.5 s) longer than the dialer's 1 s
    settings = CommsSettings(ping_interval=1.0, dead_after=10, handshake_timeout=5, spool_dir=spool)
    agent = await start_agent(None, settings=settings)
    pinging = await appliance_peer(agent.server.port, ids)
    quiet = await appliance_peer(agent.server.port, ids)
    watch = 2 * (settings.ping_interval + settings.keepalive_tick)

    try:
        to_pinging, to_quiet = await asyncio.gather(
            _watch(pinging, watch, ping_every=0.1), _watch(quiet, watch, ping_every=None)
        )
        still_open = not any(conn.is_closed for conn in agent.server.connections)
    finally:
        pinging.abort()
        quiet.abort()

    assert to_pinging[FrameType.PING] == 0
    assert to_pinging[FrameType.PONG] > 0
    assert to_quiet[FrameType.PING] >= 1
    assert still_open
