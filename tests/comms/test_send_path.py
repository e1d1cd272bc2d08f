"""The sending side of an upload over real TLS: a package held in memory goes out as DATA
frames a plain frame parser reads back byte for byte (however the sender splits its TLS
writes), and a receiver that stops reading holds the sender back instead of making it
buffer the package."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterable
from typing import Any

from octo_appliance.comms import CommsSettings, KnownContent
from octo_appliance.comms.connection import Connection
from octo_appliance.comms.framing import MAX_PAYLOAD, FrameType

from .conftest import Identities, dial_agent
from .rawpeer import RawPeer, raw_server

SIZE = 64 * 1024 * 1024 + 12_345  # far more than the socket buffers and TLS layer can hold


def _count_written(conn: Connection) -> list[int]:
    """Bytes the connection hands to its TLS stream from now on (``[total]``): a spy that
    passes every write on unchanged."""
    writer, total = conn._writer, [0]
    write, writelines = writer.write, writer.writelines

    def counting_write(data: Any) -> None:
        total[0] += len(data)
        write(data)

    def counting_writelines(parts: Iterable[Any]) -> None:
        parts = list(parts)
        total[0] += sum(len(part) for part in parts)
        writelines(parts)

    writer.write = counting_write  # type: ignore[method-assign]
    writer.writelines = counting_writelines  # type: ignore[method-assign]
    return total


async def test_a_receiver_that_stops_reading_holds_the_sender_back(
    ids: Identities, settings: CommsSettings
) -> None:
    data = os.urandom(SIZE)
    package = KnownContent(data, hashlib.sha256(data).hexdigest())
    go_on = asyncio.Event()
    received: list[bytes] = []
    ends: list[dict[str, Any]] = []

    async def stalling_agent(peer: RawPeer) -> None:
        peer.send_hello()
        assert (await peer.read()).type is FrameType.HELLO
        request = await peer.read()
        await go_on.wait()  # reads nothing meanwhile
        while (frame := await peer.read()).type is FrameType.DATA:
            assert frame.stream == request.stream and len(frame.payload) <= MAX_PAYLOAD
            received.append(bytes(frame.payload))
        assert frame.type is FrameType.DATA_END
        ends.append(frame.json())
        peer.send(FrameType.RESPONSE, request.stream, {"result": "kept", "file": False})
        await peer.read_until_eof()

    server = await raw_server(ids.agent, stalling_agent)
    try:
        conn = await dial_agent(server.port, ids, settings)
        written = _count_written(conn)
        upload = asyncio.create_task(conn.call("put", upload=package))
        for _ in range(3000):  # until the TLS transport pauses the sender (bounded wait)
            if conn._frames._writing_paused:
                break
            await asyncio.sleep(0.01)
        assert conn._frames._writing_paused
        await asyncio.sleep(0.2)  # it cannot get on meanwhile
        assert not upload.done()
        # held back by the kernel's socket buffers and the TLS layer's high-water mark, a few
        # MiB; never the whole package
        assert written[0] < SIZE // 3
        go_on.set()
        assert (await upload).result == "kept"
        conn.close()
        await conn.wait_closed()
    finally:
        await server.close()
    assert b"".join(received) == data
    assert ends == [{"length": SIZE, "sha256": package.sha256}]
