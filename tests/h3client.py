"""A small HTTP/3 client on aioquic, for tests and the bench.

One :class:`H3Client` is one QUIC connection; :meth:`H3Client.request` may be awaited many
times, also concurrently (each request is its own stream)::

    async with H3Client("127.0.0.1", port, cafile=cert_file) as client:
        response = await client.get("/api/v1/health")

:func:`h3_get` is the one-request shortcut. The server certificate is verified against
``cafile`` (the appliance's self-signed certificate) and the host name or IP address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

#: RFC 9114 H3_REQUEST_CANCELLED
H3_REQUEST_CANCELLED = int(ErrorCode.H3_REQUEST_CANCELLED)


@dataclass
class H3Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    http_version: str = "HTTP/3"

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key == lowered), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Pending:
    future: asyncio.Future[H3Response]
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)


class _H3Protocol(QuicConnectionProtocol):
    """Routes HTTP/3 events to the request waiting on each stream."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.pending: dict[int, _Pending] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self._fail_all(ConnectionError(f"QUIC connection closed: {event.reason_phrase}"))
        elif isinstance(event, StreamReset) and event.stream_id in self.pending:
            self._finish(event.stream_id, ConnectionError("the server reset the stream"))
        for h3_event in self.http.handle_event(event):
            self._on_h3_event(h3_event)

    def _on_h3_event(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        pending = self.pending.get(event.stream_id)
        if pending is None:
            return
        if isinstance(event, HeadersReceived):
            for name, value in event.headers:
                if name == b":status":
                    pending.status = int(value)
                elif not name.startswith(b":"):
                    pending.headers.append((name.decode(), value.decode()))
        else:
            pending.body += event.data
        if event.stream_ended:
            self._finish(event.stream_id, None)

    def _finish(self, stream_id: int, error: Exception | None) -> None:
        pending = self.pending.pop(stream_id)
        if pending.future.done():
            return
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(
                H3Response(pending.status, pending.headers, bytes(pending.body))
            )

    def _fail_all(self, error: Exception) -> None:
        for stream_id in list(self.pending):
            self._finish(stream_id, error)


class H3Client:
    """One HTTP/3 connection; use as ``async with``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        cafile: str | Path | None = None,
        server_name: str | None = None,
        verify: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
        self.configuration.server_name = server_name or host
        if not verify:
            self.configuration.verify_mode = ssl.CERT_NONE
        elif cafile is not None:
            # aioquic only notices a missing cafile inside the handshake: fail clearly here.
            if not Path(cafile).is_file():
                raise FileNotFoundError(f"cafile {cafile} does not exist")
            self.configuration.load_verify_locations(cafile=str(cafile))
        self._stack: contextlib.AsyncExitStack | None = None
        self._protocol: _H3Protocol | None = None

    async def __aenter__(self) -> H3Client:
        self._stack = contextlib.AsyncExitStack()
        protocol = await self._stack.enter_async_context(
            connect(
                self.host,
                self.port,
                configuration=self.configuration,
                create_protocol=_H3Protocol,
            )
        )
        self._protocol = cast(_H3Protocol, protocol)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._stack is not None
        await self._stack.aclose()
        self._protocol = None

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> H3Response:
        request_headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", self.authority.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"octo-tests-h3client"),
        ]
        request_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if body:
            request_headers.append((b"content-length", str(len(body)).encode()))
        _, future = self.send(request_headers, body)
        return await future

    def send(
        self, headers: list[tuple[bytes, bytes]], body: bytes = b"", *, end_stream: bool = True
    ) -> tuple[int, asyncio.Future[H3Response]]:
        """Open a request stream with exactly ``headers`` (pseudo-headers included) and
        ``body``; with ``end_stream=False`` the request stays open (see :meth:`reset`).
        Returns the stream id and the future response."""
        protocol = self._require_protocol()
        stream_id = protocol._quic.get_next_available_stream_id()
        future: asyncio.Future[H3Response] = asyncio.get_running_loop().create_future()
        protocol.pending[stream_id] = _Pending(future)
        protocol.http.send_headers(stream_id, headers, end_stream=end_stream and not body)
        if body:
            protocol.http.send_data(stream_id, body, end_stream=end_stream)
        protocol.transmit()
        return stream_id, future

    def reset(self, stream_id: int, error_code: int = H3_REQUEST_CANCELLED) -> None:
        """Abort sending a request, as a client that gives up mid-upload does."""
        protocol = self._require_protocol()
        protocol._quic.reset_stream(stream_id, error_code)
        protocol.transmit()

    def _require_protocol(self) -> _H3Protocol:
        if self._protocol is None:
            raise RuntimeError("use H3Client as 'async with H3Client(...) as client'")
        return self._protocol

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> H3Response:
        return await self.request("GET", path, headers)


async def h3_get(
    host: str,
    port: int,
    path: str,
    headers: Mapping[str, str] | None = None,
    cafile: str | Path | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One GET over a fresh HTTP/3 connection: ``(status, headers, body)``."""
    async with H3Client(host, port, cafile=cafile) as client:
        response = await client.get(path, headers)
    return response.status, response.headers, response.body
