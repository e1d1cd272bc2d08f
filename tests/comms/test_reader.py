"""The connection's frame reader over real TLS: frames of every size parse the same however
the bytes are split, what the handshake's stream had buffered is carried over, and a consumer
that does not read holds the sender back instead of filling memory."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from octo_appliance.comms.framing import (
    CONTROL_STREAM,
    MAX_PAYLOAD,
    Frame,
    FrameType,
    encode_frame,
    read_frame,
)
from octo_appliance.comms.reader import QUEUE_HIGH, SMALL_PAYLOAD, FrameProtocol

from .conftest import Identities
from .rawpeer import raw_client_context


@dataclass
class Pair:
    """A TLS connection on 127.0.0.1: the accepting side as asyncio streams, the dialing
    side's writer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    client: asyncio.StreamWriter

    def adopt(self) -> FrameProtocol:
        transport = self.writer.transport
        assert isinstance(transport, asyncio.Transport)
        return FrameProtocol.adopt(
            self.reader, transport, max_payload=MAX_PAYLOAD, on_progress=lambda: None
        )


@pytest.fixture
async def pair(ids: Identities) -> AsyncIterator[Pair]:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ids.agent.load_into(context)
    server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    _, client = await asyncio.open_connection(
        "127.0.0.1", port, ssl=raw_client_context(ids.appliance)
    )
    reader, writer = await accepted
    yield Pair(reader, writer, client)
    client.transport.abort()
    writer.transport.abort()
    server.close()
    await server.wait_closed()


def _json(size: int) -> bytes:
    return json.dumps({"pad": "x" * (size - 11)}).encode()


def _frames() -> list[Frame]:
    return [
        Frame(FrameType.REQUEST, 1, _json(40)),
        Frame(FrameType.DATA, 1, b""),
        Frame(FrameType.DATA, 1, os.urandom(SMALL_PAYLOAD)),
        Frame(FrameType.DATA, 1, os.urandom(SMALL_PAYLOAD + 1)),
        Frame(FrameType.PING, CONTROL_STREAM, b"k"),
        Frame(FrameType.DATA, 1, os.urandom(MAX_PAYLOAD)),
        Frame(FrameType.DATA, 3, os.urandom(3 * SMALL_PAYLOAD + 5)),
        Frame(FrameType.RESPONSE, 3, _json(200_000)),
        Frame(FrameType.DATA, 1, os.urandom(MAX_PAYLOAD)),
        Frame(FrameType.DATA_END, 1, _json(60)),
    ]


async def test_frames_of_every_size_arrive_intact_however_the_bytes_are_split(
    pair: Pair,
) -> None:
    hello = Frame(FrameType.HELLO, CONTROL_STREAM, _json(50))
    frames = _frames()
    wire = memoryview(b"".join(encode_frame(frame) for frame in frames))
    pair.client.write(encode_frame(hello))
    pieces = (7, 4093, 65_537, 10, 300_001)
    offset = 0
    for index in range(len(wire)):  # uneven pieces, so boundaries fall anywhere
        if offset >= len(wire):
            break
        size = pieces[index % len(pieces)]
        pair.client.write(wire[offset : offset + size])
        offset += size
    # the handshake reads HELLO through the stream, which may hold more behind it
    assert await read_frame(pair.reader) == hello
    protocol = pair.adopt()
    for sent in frames:
        got = await protocol.read_frame()
        assert (got.type, got.stream, bytes(got.payload)) == (sent.type, sent.stream, sent.payload)
        if sent.type is not FrameType.DATA and sent.type is not FrameType.PING:
            assert got.json() == json.loads(sent.payload)
    pair.client.close()
    with pytest.raises(asyncio.IncompleteReadError) as ended:
        await protocol.read_frame()
    assert ended.value.partial == b""  # closed between frames


async def test_a_connection_closed_in_the_middle_of_a_frame_says_so(pair: Pair) -> None:
    protocol = pair.adopt()
    frame = encode_frame(Frame(FrameType.DATA, 1, os.urandom(MAX_PAYLOAD)))
    pair.client.write(frame[: MAX_PAYLOAD // 2])
    await pair.client.drain()
    pair.client.close()
    with pytest.raises(asyncio.IncompleteReadError) as ended:
        await protocol.read_frame()
    assert ended.value.partial  # bytes of an unfinished frame were lost


async def test_a_consumer_that_does_not_read_holds_the_sender_back(pair: Pair) -> None:
    protocol = pair.adopt()
    transport = pair.writer.transport
    payloads = [os.urandom(MAX_PAYLOAD) for _ in range(32)]

    async def send() -> None:
        for payload in payloads:
            pair.client.write(encode_frame(Frame(FrameType.DATA, 1, payload)))
            await pair.client.drain()

    sender = asyncio.create_task(send())
    for _ in range(3000):  # until the reader stops reading (bounded, not a timing claim)
        if not transport.is_reading():
            break
        await asyncio.sleep(0.01)
    assert not transport.is_reading()
    assert protocol.backlog <= QUEUE_HIGH + MAX_PAYLOAD
    await asyncio.sleep(0.2)  # the sender cannot get its 32 MiB out meanwhile
    assert not sender.done()
    assert protocol.backlog <= QUEUE_HIGH + MAX_PAYLOAD
    for payload in payloads:
        assert bytes((await protocol.read_frame()).payload) == payload
    await sender
    assert transport.is_reading()
