"""Every connection a listener accepted receives into its thread's one read buffer: nothing
of a large message is lost or mixed up when many connections receive at once, and no
connection keeps a 256 KiB buffer of its own (5,000 polling agents would hold 1.2 GB)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from octo_appliance.comms import IncomingRequest
from octo_appliance.comms.readbuffer import SIZE, shared_read_buffer
from octo_appliance.comms.tlswrites import SLICE

from .conftest import StartAgent


async def echo(request: IncomingRequest) -> Any:
    return request.params


async def test_connections_receive_large_messages_intact_through_one_buffer(
    start_agent: StartAgent,
) -> None:
    agent = await start_agent(echo)
    conns = [await agent.dial() for _ in range(6)]
    # each message is larger than the buffer, so it arrives in several reads interleaved
    # with the other connections' reads
    payloads = [{"blob": chr(ord("a") + n) * (3 * SIZE // 2 + n)} for n in range(len(conns))]
    results = await asyncio.gather(
        *(conn.call("echo", payload) for conn, payload in zip(conns, payloads, strict=True))
    )
    assert [r.result for r in results] == payloads

    accepted = list(agent.server.connections)
    assert len(accepted) == len(conns)
    for conn in accepted:
        protocol = conn._writer.transport._ssl_protocol  # type: ignore[attr-defined]
        assert protocol._ssl_buffer_view is shared_read_buffer()
        assert len(protocol._ssl_buffer) == 0  # no buffer of its own


def test_each_thread_has_its_own_buffer() -> None:
    here = shared_read_buffer()
    there: list[memoryview] = []
    thread = threading.Thread(target=lambda: there.append(shared_read_buffer()))
    thread.start()
    thread.join()
    assert shared_read_buffer() is here
    assert there[0] is not here
    assert len(here) == len(there[0]) == SIZE


class _PendingSpy:
    """The connection's outgoing BIO, recording how much it held at each read."""

    def __init__(self, bio: Any) -> None:
        self.bio = bio
        self.held: list[int] = []

    @property
    def pending(self) -> int:
        return int(self.bio.pending)

    def read(self, n: int = -1) -> bytes:
        self.held.append(self.bio.pending)
        return bytes(self.bio.read(n))


async def test_a_large_message_leaves_no_large_tls_buffer_behind(start_agent: StartAgent) -> None:
    """The accepted side encrypts a 600 KB answer a TLS record at a time, reading the
    outgoing BIO out after each: OpenSSL's memory BIO keeps its largest size for the life of
    the connection, so one big message would leave that much behind on every idle connection
    (issue 14: ~330 KB each after the health checks sent the runner build)."""
    agent = await start_agent(echo)
    conn = await agent.dial()
    (accepted,) = agent.server.connections
    protocol = accepted._writer.transport._ssl_protocol  # type: ignore[attr-defined]
    spy = _PendingSpy(protocol._outgoing)
    protocol._outgoing = spy
    payload = {"blob": "x" * (600 * 1024)}
    assert (await conn.call("echo", payload)).result == payload
    assert sum(spy.held) > 600 * 1024  # the answer went through the spy
    assert max(spy.held) <= SLICE + 1024  # one record and its framing, never the message
