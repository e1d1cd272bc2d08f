"""A hand-driven peer: real TLS, frames written and read one by one, for misbehaving peers.

It speaks the wire format through ``framing`` only, so tests can send what the real
Connection never would (a wrong hash, half a file, silence, another protocol version).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from octo_appliance.comms import Identity
from octo_appliance.comms.framing import (
    CONTROL_STREAM,
    Frame,
    FrameType,
    encode_frame,
    json_frame,
    read_frame,
)
from octo_appliance.comms.pinning import client_context


def hello_body(role: str = "agent", version: int = 1, min_version: int = 1) -> dict[str, Any]:
    return {
        "protocol": "octo-comms",
        "version": version,
        "min_version": min_version,
        "role": role,
        "id": "raw",
    }


class RawPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def send(self, kind: FrameType, stream: int, body: dict[str, Any] | bytes) -> None:
        frame = (
            Frame(kind, stream, body) if isinstance(body, bytes) else json_frame(kind, stream, body)
        )
        self.writer.write(encode_frame(frame))

    def send_hello(self, **kwargs: Any) -> None:
        self.send(FrameType.HELLO, CONTROL_STREAM, hello_body(**kwargs))

    async def read(self, *, skip_pings: bool = True) -> Frame:
        """The next frame (PINGs answered and skipped unless asked for)."""
        while True:
            frame = await read_frame(self.reader)
            if skip_pings and frame.type is FrameType.PING:
                self.send(FrameType.PONG, CONTROL_STREAM, frame.payload)
                continue
            if skip_pings and frame.type is FrameType.PONG:
                continue
            return frame

    async def read_until_eof(self) -> bytes:
        """Every byte until the peer closes or resets the connection."""
        data = b""
        try:
            while chunk := await self.reader.read(65536):
                data += chunk
        except (ConnectionError, ssl.SSLError):
            pass
        return data

    def abort(self) -> None:
        self.writer.transport.abort()


def raw_client_context(identity: Identity) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    identity.load_into(context)
    return context


async def raw_connect(port: int, identity: Identity) -> RawPeer:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=raw_client_context(identity)
    )
    return RawPeer(reader, writer)


class RawServer:
    """A TLS server that asks for (but does not verify) a client certificate."""

    def __init__(self, identity: Identity, on_peer: Callable[[RawPeer], Awaitable[None]]) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        identity.load_into(self._context)
        self._on_peer = on_peer
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._context)
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = RawPeer(reader, writer)
        try:
            await self._on_peer(peer)
        except asyncio.CancelledError:
            pass  # the test is over
        finally:
            peer.abort()
            self._tasks.discard(task)


async def raw_server(
    identity: Identity, on_peer: Callable[[RawPeer], Awaitable[None]]
) -> RawServer:
    return await RawServer(identity, on_peer).start()


async def refused_burst(port: int, source: str, identity: Identity, count: int) -> None:
    """``count`` TLS connections from ``source`` presenting ``identity``, each read to its end
    (the peer refuses them: a burst that must be logged once, not ``count`` times)."""
    context = client_context(identity, None)
    for _ in range(count):
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, local_addr=(source, 0)
            )
        except (OSError, ssl.SSLError):
            continue
        with contextlib.suppress(OSError, ssl.SSLError):
            await reader.read()
        writer.close()
