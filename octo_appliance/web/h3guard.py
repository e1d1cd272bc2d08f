"""Guards around Hypercorn's HTTP/3 (QUIC) side, so one client cannot switch HTTP/3 off.

Hypercorn 0.18 (the newest release) runs every QUIC datagram through one loop,
``asyncio/udp_server.py`` ``UDPServer.run``, with no error handling per event: the first
exception ends the loop, and from then on every datagram is dropped while HTTP/2 and ``alt-svc``
carry on. A CONNECT request without ``:path`` was enough (``protocol/h3.py`` ``_create_stream``
reads an unset ``raw_path``). The same loop also let a flood of garbage Initial packets each
allocate a QUIC connection, never told the application that a client reset its stream, and
buffered a header section of any size. See docs/operations.md "HTTP/3 under hostile traffic"
and docs/upstream/hypercorn-h3-connect.md.

:func:`install` swaps in three subclasses where Hypercorn looks its classes up at run time
(module attributes it reads when the QUIC listener starts):

- :class:`GuardedQuicProtocol` (for ``hypercorn.protocol.quic.QuicProtocol``): validates client
  addresses with a QUIC Retry before allocating anything, caps handshakes in progress (in all
  and per address), and turns an error while handling one connection into closing that
  connection, not the listener;
- :class:`GuardedH3Protocol` (for ``hypercorn.protocol.quic.H3Protocol``): answers a request it
  cannot serve (no ``:path``, header section too large) itself, resets one stream on an error,
  and passes a client's stream reset or lost connection to the application as
  ``http.disconnect``;
- :class:`LimitedH3Connection` (for ``hypercorn.protocol.h3.H3Connection``): enforces
  :data:`HEADER_SECTION_LIMIT` and keeps the QPACK dynamic table off, so a small header block
  cannot decompress into a large one.

No session tickets are issued (as before): docs/operations.md says why.

Relies on Hypercorn 0.18 and aioquic 1.7 internals; pyproject.toml pins both minor versions,
tests/unit/test_h3guard.py fails when a hook moves, and tests/integration/test_h3_hostile.py
shows each guard on a real QUIC connection.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from collections import Counter
from typing import Any

import hypercorn.protocol.h3 as hypercorn_h3
import hypercorn.protocol.quic as hypercorn_quic
import pylsqpack
from aioquic._buffer import Buffer  # what aioquic.buffer re-exports
from aioquic.h3.connection import ErrorCode, FrameType, H3Connection, H3Stream, Setting
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicHeader,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler
from hypercorn.events import Event, RawData
from hypercorn.protocol.events import Body, EndBody, StreamClosed

from octo_appliance.exceptions import ApiError, BadRequest
from octo_appliance.web.header_limit import (
    HEADER_SECTION_LIMIT,
    error_body,
    header_list_size,
    too_large,
)

log = logging.getLogger(__name__)

#: QUIC handshakes in progress (address validated by Retry, handshake not complete) at once.
MAX_PENDING_HANDSHAKES = 256
#: ... and from one IPv4 address or IPv6 /64.
MAX_PENDING_PER_ADDRESS = 16
#: QUIC's smallest datagram a client's first Initial must fill (RFC 9000 section 14.1).
MIN_INITIAL_SIZE = 1200
#: A frame type HTTP/3 reserves for greasing (0x1f * N + 0x21): aioquic discards its payload as
#: it arrives, which is what an oversized HEADERS frame is turned into.
_DISCARDED_FRAME_TYPE = 0x21


# ---------------------------------------------------------------- HTTP/3 framing


class LimitedH3Connection(H3Connection):
    """aioquic's HTTP/3 connection with a header-section limit and no QPACK dynamic table.

    ``refused`` collects the request streams whose header section was over the limit; the
    protocol answers them 431. An oversized HEADERS frame is refused as soon as its length is
    read, and its payload (and whatever follows on that stream) is dropped as it arrives.
    """

    def __init__(self, quic: QuicConnection, enable_webtransport: bool = False) -> None:
        self.refused: set[int] = set()
        self._dropping: set[int] = set()
        super().__init__(quic, enable_webtransport)

    def _init_connection(self) -> None:
        # With a dynamic table a two-byte reference can stand for a 4 KB entry; without one a
        # field line expands at most about a hundredfold (the static table's longest entry).
        self._max_table_capacity = 0
        self._decoder = pylsqpack.Decoder(0, self._blocked_streams)
        super()._init_connection()

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings[Setting.MAX_FIELD_SECTION_SIZE] = HEADER_SECTION_LIMIT
        return settings

    def _check_request_or_push_frame_type(self, frame_type: int, stream: H3Stream) -> None:
        super()._check_request_or_push_frame_type(frame_type, stream)
        size = stream.frame_size or 0
        if frame_type == FrameType.HEADERS and size > HEADER_SECTION_LIMIT:
            self.refused.add(stream.stream_id)
            self._dropping.add(stream.stream_id)
            stream.frame_type = _DISCARDED_FRAME_TYPE

    def _receive_request_or_push_data(
        self, stream: H3Stream, data: bytes, stream_ended: bool
    ) -> list[H3Event]:
        if stream.stream_id in self._dropping:
            stream.buffer = b""
            return []
        return super()._receive_request_or_push_data(stream, data, stream_ended)

    def _decode_headers(self, stream_id: int, frame_data: bytes | None) -> list[Any]:
        headers = super()._decode_headers(stream_id, frame_data)
        if header_list_size(headers) > HEADER_SECTION_LIMIT:
            self.refused.add(stream_id)
        return list(headers)


# ---------------------------------------------------------------- HTTP/3 requests


class GuardedH3Protocol(hypercorn_h3.H3Protocol):
    """Hypercorn's HTTP/3 request handling with each stream's failure kept to that stream."""

    connection: LimitedH3Connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._quic: QuicConnection = args[7] if len(args) > 7 else kwargs["quic"]

    async def handle(self, quic_event: QuicEvent) -> None:
        if isinstance(quic_event, StreamReset):
            await self._peer_gone(quic_event.stream_id)
        elif isinstance(quic_event, ConnectionTerminated):  # closed, or silent past the timeout
            for open_id in list(self.streams):
                await self._peer_gone(open_id)
        for event in self.connection.handle_event(quic_event):
            stream_id = getattr(event, "stream_id", None)
            try:
                await self._handle_h3_event(event)
            except Exception:
                log.warning("HTTP/3: resetting stream %s after an error", stream_id, exc_info=True)
                if stream_id is not None:
                    await self._abort_stream(stream_id)
        for stream_id in sorted(self.connection.refused):
            if stream_id not in self.streams:
                await self._refuse(stream_id, too_large())
        self.connection.refused.clear()

    async def _handle_h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            await self._headers_received(event)
        elif isinstance(event, DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None:  # refused, reset or already answered: the body is not wanted
                return
            await stream.handle(Body(stream_id=event.stream_id, data=event.data))
            if event.stream_ended:
                await stream.handle(EndBody(stream_id=event.stream_id))

    async def _headers_received(self, event: HeadersReceived) -> None:
        stream_id = event.stream_id
        if stream_id in self.streams:  # trailers: Hypercorn passes none on, neither do we
            if event.stream_ended:
                await self.streams[stream_id].handle(EndBody(stream_id=stream_id))
            return
        if self.context.terminated.is_set():
            await self._abort_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)
            return
        if stream_id in self.connection.refused:
            self.connection.refused.discard(stream_id)
            await self._refuse(stream_id, too_large())
            return
        if not any(name == b":path" for name, _ in event.headers):
            # A plain CONNECT (only :method and :authority): a proxy tunnel, which we are not.
            await self._refuse(
                stream_id,
                BadRequest(
                    "a request needs a :path: this server is not a proxy (no CONNECT tunnels)",
                    hint="send the request to the URL of an API resource",
                ),
            )
            return
        await self._create_stream(event)
        if event.stream_ended:
            await self.streams[stream_id].handle(EndBody(stream_id=stream_id))

    async def _peer_gone(self, stream_id: int) -> None:
        """A client that reset its request stream or lost its connection has gone: tell the
        application (``http.disconnect``), as Hypercorn does over HTTP/2."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            await stream.handle(StreamClosed(stream_id=stream_id))

    async def _refuse(self, stream_id: int, error: ApiError) -> None:
        """Answer ``error`` without the application and stop reading the request."""
        body = error_body(error)
        headers = [
            (b":status", b"%d" % error.status_code),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *self.config.response_headers("h3"),
        ]
        try:
            self.connection.send_headers(stream_id, headers)
            self.connection.send_data(stream_id, body, end_stream=True)
        except Exception:  # the client reset the stream meanwhile
            log.debug("HTTP/3: could not answer stream %s", stream_id, exc_info=True)
        with contextlib.suppress(Exception):
            self._quic.stop_stream(stream_id, ErrorCode.H3_NO_ERROR)
        log.debug("HTTP/3: refused stream %s with %d", stream_id, error.status_code)

    async def _abort_stream(self, stream_id: int, code: int = ErrorCode.H3_INTERNAL_ERROR) -> None:
        """Reset both directions of a stream; an application already running on it is told
        the client went away, so it does not wait for more of the request forever."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.handle(StreamClosed(stream_id=stream_id))
        for action in (self._quic.reset_stream, self._quic.stop_stream):
            with contextlib.suppress(Exception):
                action(stream_id, code)


# ---------------------------------------------------------------- QUIC connections


class GuardedQuicProtocol(hypercorn_quic.QuicProtocol):
    """Hypercorn's QUIC demultiplexer, rewritten where it allocated or failed for everyone.

    - A new connection is created only for an Initial packet carrying a valid Retry token, so
      the client has shown it receives at its address; without a token the answer is a Retry
      (smaller than the packet that asked for it, and stateless).
    - At most :data:`MAX_PENDING_HANDSHAKES` handshakes (and :data:`MAX_PENDING_PER_ADDRESS`
      per IPv4 address or IPv6 /64) are in progress; past that, new Initial packets are
      dropped and the client falls back to HTTP/2 or tries later.
    - An error while handling one connection's datagram or timer closes that connection.
    - A Version Negotiation packet is never answered with another (a reflection loop).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._retry = QuicRetryTokenHandler()
        self._handshaking: dict[int, tuple[hypercorn_quic._Connection, str]] = {}
        self._last_full_warning = -1e9

    async def handle(self, event: Event) -> None:
        if not isinstance(event, RawData):
            return
        connection: hypercorn_quic._Connection | None = None
        try:
            connection = await self._route(event.data, event.address)
            if connection is not None:
                now = self.context.time()
                connection.quic.receive_datagram(event.data, event.address, now=now)
                await self._handle_events(connection, event.address)
        except Exception:
            log.warning("HTTP/3: closing a QUIC connection after an error", exc_info=True)
            if connection is not None:
                await self._abandon(connection)

    async def _handle_timer(self, timer: float, connection: hypercorn_quic._Connection) -> None:
        try:
            await super()._handle_timer(timer, connection)
        except Exception:
            log.warning("HTTP/3: closing a QUIC connection after an error", exc_info=True)
            await self._abandon(connection)

    async def _route(
        self, data: bytes, address: NetworkAddress
    ) -> hypercorn_quic._Connection | None:
        """The connection a datagram belongs to; a new one only for a validated Initial."""
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self.quic_config.connection_id_length
            )
        except ValueError:
            return None
        supported = self.quic_config.supported_versions
        if header.version is not None and header.version not in supported:
            if header.packet_type != QuicPacketType.VERSION_NEGOTIATION:
                answer = encode_quic_version_negotiation(
                    source_cid=header.destination_cid,
                    destination_cid=header.source_cid,
                    supported_versions=supported,
                )
                await self.send(RawData(data=answer, address=address))
            return None
        connection = self.connections.get(header.destination_cid)
        if connection is not None:
            return connection
        if (
            header.packet_type != QuicPacketType.INITIAL
            or len(data) < MIN_INITIAL_SIZE
            or self.context.terminated.is_set()
        ):
            return None
        if not header.token:
            await self._send_retry(header, address)
            return None
        try:
            original_cid = self._retry.validate_token(
                address=address,
                destination_cid=header.destination_cid,
                token=header.token,
                now=self.context.time(),
            )
        except ValueError:
            return None  # forged, expired or for another address
        if not self._room_for(_address_key(address[0])):
            return None
        quic = QuicConnection(
            configuration=self.quic_config,
            original_destination_connection_id=original_cid,
            retry_source_connection_id=header.destination_cid,
        )
        connection = hypercorn_quic._Connection(
            cids={header.destination_cid, quic.host_cid},
            quic=quic,
            task=self.context.single_task_class(),
        )
        for cid in connection.cids:
            self.connections[cid] = connection
        self._handshaking[id(connection)] = (connection, _address_key(address[0]))
        return connection

    async def _send_retry(self, header: QuicHeader, address: NetworkAddress) -> None:
        assert header.version is not None  # an Initial packet has a long header
        retry_cid = os.urandom(self.quic_config.connection_id_length)
        token = self._retry.create_token(
            address=address,
            original_destination_connection_id=header.destination_cid,
            retry_source_connection_id=retry_cid,
            now=self.context.time(),
        )
        packet = encode_quic_retry(
            version=header.version,
            source_cid=retry_cid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=token,
        )
        await self.send(RawData(data=packet, address=address))

    def _room_for(self, host: str) -> bool:
        """Forget finished handshakes, then say whether ``host`` may start another."""
        for key, (connection, _) in list(self._handshaking.items()):
            done = getattr(connection.quic, "_handshake_complete", False)
            if done or not connection.cids:  # complete, or terminated (cids emptied)
                del self._handshaking[key]
        per_host = Counter(h for _, h in self._handshaking.values())
        if len(self._handshaking) < MAX_PENDING_HANDSHAKES and per_host[host] < (
            MAX_PENDING_PER_ADDRESS
        ):
            return True
        now = self.context.time()
        if now - self._last_full_warning >= 60:
            self._last_full_warning = now
            log.warning(
                "HTTP/3: %d QUIC handshakes in progress (%d from %s); refusing new ones "
                "until some finish (logged at most once a minute)",
                len(self._handshaking),
                per_host[host],
                host,
            )
        return False

    async def _abandon(self, connection: hypercorn_quic._Connection) -> None:
        """Close a connection whose handling failed; forget it even if closing fails too."""
        with contextlib.suppress(Exception):
            connection.quic.close(error_code=QuicErrorCode.INTERNAL_ERROR)
            await self.send_all(connection)
        with contextlib.suppress(Exception):
            await connection.task.stop()
        for cid in connection.cids:
            self.connections.pop(cid, None)
        connection.cids = set()
        self._handshaking.pop(id(connection), None)


def _address_key(host: str) -> str:
    """What one client is, for the per-address cap: its IPv4 address, or its IPv6 /64 (one
    machine or one site usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # a dual-stack socket's view of an IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{host}/64", strict=False))
    return str(ip)


def install() -> None:
    """Put the guarded classes where Hypercorn looks them up; safe to call more than once."""
    setattr(hypercorn_h3, "H3Connection", LimitedH3Connection)  # noqa: B010
    setattr(hypercorn_quic, "H3Protocol", GuardedH3Protocol)  # noqa: B010
    setattr(hypercorn_quic, "QuicProtocol", GuardedQuicProtocol)  # noqa: B010
