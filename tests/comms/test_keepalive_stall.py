"""A side whose own event loop stalled must not call a talking peer dead.

The peer here runs on an event loop of its own thread, so it keeps sending PINGs while the
test's loop (the side under test) is blocked by ``time.sleep``: a process starved of CPU, as
the packed agent processes of the 5,000-agent bench were. When the loop wakes, its keepalive
check is late and the peer looks silent for longer than ``dead_after``, although its PINGs
wait in the socket: the connection must stay, and a peer that then really goes silent must
still be called dead.

The first holds because an asyncio loop handles the reads that became ready before the timers
that fell due in the same turn, so the late check already sees the PINGs' arrival. These tests
pin that: the 5,000-agent bench's lost targets ("no frame for 26-29 s") were therefore the
checking side's true verdict on peers that sent nothing for that long (starved agent
processes), not a starved side misjudging a talking peer (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from octo_appliance.comms import CommsSettings, PeerLost
from octo_appliance.comms.framing import CONTROL_STREAM, FrameType

from .conftest import Identities, dial_agent
from .rawpeer import RawPeer, raw_server


class TalkingPeer:
    """A hand-driven agent on its own thread and loop: PINGs every 50 ms while ``talking``
    is set, then silence with the connection left open."""

    def __init__(self, ids: Identities) -> None:
        self.ids = ids
        self.talking = threading.Event()
        self.talking.set()
        self.pings_sent = 0
        self._port: int | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    @property
    def port(self) -> int:
        assert self._port is not None
        return self._port

    def start(self) -> TalkingPeer:
        self._thread.start()
        assert self._ready.wait(10), "the peer's server did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await raw_server(self.ids.agent, self._talk)
        self._port = server.port
        self._ready.set()
        await self._stop.wait()
        await server.close()

    async def _talk(self, peer: RawPeer) -> None:
        peer.send_hello()
        await peer.read()  # the dialer's HELLO
        while self.talking.is_set():
            peer.send(FrameType.PING, CONTROL_STREAM, b"k")
            self.pings_sent += 1
            await asyncio.sleep(0.05)
        await asyncio.sleep(60)  # silent, the connection open: a hung host


@pytest.fixture
def peer(ids: Identities) -> Iterator[TalkingPeer]:
    talking = TalkingPeer(ids).start()
    yield talking
    talking.stop()


@pytest.fixture
def settings(spool: Path) -> CommsSettings:
    return CommsSettings(ping_interval=0.1, dead_after=0.6, handshake_timeout=5, spool_dir=spool)


async def test_a_stalled_side_keeps_a_peer_whose_pings_wait_unread(
    ids: Identities, settings: CommsSettings, peer: TalkingPeer
) -> None:
    conn = await dial_agent(peer.port, ids, settings)
    await asyncio.sleep(0.2)
    assert not conn.is_closed

    sent_before = peer.pings_sent
    time.sleep(settings.dead_after * 3)  # this loop is starved; the peer goes on pinging
    assert peer.pings_sent > sent_before  # its PINGs wait in this side's socket
    await asyncio.sleep(settings.dead_after / 2)  # the late keepalive check runs now

    assert not conn.is_closed, conn._reason


async def test_a_peer_silent_after_the_stall_is_still_called_dead(
    ids: Identities, settings: CommsSettings, peer: TalkingPeer
) -> None:
    conn = await dial_agent(peer.port, ids, settings)
    time.sleep(settings.dead_after * 3)
    await asyncio.sleep(settings.dead_after / 2)
    assert not conn.is_closed

    peer.talking.clear()
    pending = asyncio.ensure_future(conn.call("anything"))
    async with asyncio.timeout(settings.dead_after * 10):
        await conn.wait_closed()

    with pytest.raises(PeerLost, match=r"keepalive limit 0\.6 s"):
        await pending
