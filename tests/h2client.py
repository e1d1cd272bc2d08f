"""A raw HTTP/2 client (the ``h2`` state machine over a socket) for tests that must control
frame order: httpx sends a request's frames as it likes, so it cannot send "the answer first,
then the rest of the body" on purpose."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class StreamResult:
    status: int | None = None
    body: bytes = b""
    ended: bool = False
    reset_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class RawH2:
    """One HTTP/2 connection over TLS (``h2`` ALPN), read and written by hand."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, timeout: float = 10.0):
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.authority = f"{host}:{port}"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.streams: dict[int, StreamResult] = {}
        self.disconnected = False
        self._flush()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        end: bool = True,
        body: bytes | None = None,
    ) -> int:
        """Send a request's HEADERS (``end``: with END_STREAM), and with ``body`` its whole
        body in the same write; the stream id."""
        stream_id: int = self.conn.get_next_available_stream_id()
        pseudo = [(":method", method), (":path", path), (":scheme", "https")]
        pseudo.append((":authority", self.authority))
        fields = pseudo + list((headers or {}).items())
        self.conn.send_headers(stream_id, fields, end_stream=end and body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.streams[stream_id] = StreamResult()
        self._flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self.conn.send_data(stream_id, data, end_stream=end)
        self._flush()

    def read(self, stream_id: int, *, until: str = "ended") -> StreamResult:
        """Read until the stream has a body (``until="body"``), has ended or was reset, or the
        server closed the connection (``disconnected``)."""
        result = self.streams[stream_id]
        while not (result.ended or result.reset_code is not None):
            if until == "body" and result.body:
                break
            data = self.sock.recv(65536)
            if not data:
                self.disconnected = True
                break
            for event in self.conn.receive_data(data):
                self._record(event)
            self._flush()
        return result

    def _record(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if stream is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            stream.headers = {k.decode(): v.decode() for k, v in event.headers}
            stream.status = int(stream.headers[":status"])
        elif isinstance(event, h2.events.DataReceived):
            stream.body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset):
            stream.reset_code = event.error_code
