"""Frames on the wire: a 10-byte header and a payload (see docs/protocol.md).

Header, big-endian ``>BBII``: frame type, flags (reserved, sent as 0, ignored on receipt),
stream id, payload length. Control frames (HELLO, PING, PONG, GOAWAY, ERROR) travel on stream 0;
the others on the stream of the request they belong to. The payload limit is checked from the
header, before a byte of the payload is read, so a peer cannot make this side buffer more than
one frame's worth.
"""

from __future__ import annotations

import asyncio
import enum
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from octo_appliance.comms.errors import MessageTooLarge, ProtocolError

PROTOCOL_NAME = "octo-comms"
#: The highest protocol version this code speaks (2: EVENT_ACK, per-call event flow control).
PROTOCOL_VERSION = 2
#: The lowest protocol version this code still accepts.
MIN_PROTOCOL_VERSION = 1
HEADER = struct.Struct(">BBII")
MAX_PAYLOAD = 1024 * 1024
CONTROL_STREAM = 0
#: Read large payloads in pieces so the keepalive sees progress on slow links.
_READ_PIECE = 64 * 1024


class FrameType(enum.IntEnum):
    HELLO = 1
    REQUEST = 2
    EVENT = 3
    RESPONSE = 4
    DATA = 5
    DATA_END = 6
    CANCEL = 7
    PING = 8
    PONG = 9
    GOAWAY = 10
    ERROR = 11
    EVENT_ACK = 12


#: From version 2 a handler has at most this many EVENTs of one call unacknowledged: the
#: requester acknowledges them as it has handled them (EVENT_ACK), so a slow consumer holds
#: the handler back instead of queueing its events without limit.
EVENT_WINDOW = 64
#: The requester acknowledges once this many events are handled (and at the end).
EVENT_ACK_EVERY = EVENT_WINDOW // 2
#: The first protocol version with EVENT_ACK.
FLOW_CONTROL_VERSION = 2


#: a frame's payload: ``bytes`` as parsed or built; a received large frame's own buffer
#: (``bytearray``, or for DATA a ``memoryview`` of a pooled buffer: see comms/reader.py)
Payload: TypeAlias = bytes | bytearray | memoryview


CONTROL_TYPES = frozenset(
    {FrameType.HELLO, FrameType.PING, FrameType.PONG, FrameType.GOAWAY, FrameType.ERROR}
)


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    stream: int
    payload: Payload = b""

    def json(self) -> dict[str, Any]:
        """The payload as a JSON object; anything else is a protocol error."""
        payload = self.payload
        try:
            value = json.loads(payload.tobytes() if isinstance(payload, memoryview) else payload)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(f"{self.type.name} frame payload is not valid JSON") from None
        if not isinstance(value, dict):
            raise ProtocolError(f"{self.type.name} frame payload is not a JSON object")
        return value


def json_frame(
    frame_type: FrameType, stream: int, body: dict[str, Any], *, max_payload: int = MAX_PAYLOAD
) -> Frame:
    """A frame carrying ``body`` as compact UTF-8 JSON; too big or not JSON: nothing is sent."""
    try:
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MessageTooLarge(
            f"the {frame_type.name} message cannot be sent as JSON: {exc}",
            hint="pass only JSON values (dict, list, str, int, float, bool, None)",
        ) from None
    data = payload.encode()
    if len(data) > max_payload:
        raise MessageTooLarge(
            f"the {frame_type.name} message is {len(data)} bytes, over the {max_payload}-byte "
            "frame limit",
            hint="send large content as a file (upload= or respond_with_file) instead",
        )
    return Frame(frame_type, stream, data)


def encode_frame(frame: Frame) -> bytes:
    return HEADER.pack(frame.type, 0, frame.stream, len(frame.payload)) + frame.payload


def data_header(stream: int, length: int) -> bytes:
    """The header of a DATA frame whose payload is written after it, uncopied (a slice of a
    package held in memory goes to the TLS layer as it is)."""
    return HEADER.pack(FrameType.DATA, 0, stream, length)


def decode_header(
    header: bytes | memoryview, max_payload: int = MAX_PAYLOAD
) -> tuple[FrameType, int, int]:
    """``(type, stream, length)`` from a header; unknown types, bad streams, oversize: error."""
    raw_type, _flags, stream, length = HEADER.unpack(header)
    try:
        frame_type = FrameType(raw_type)
    except ValueError:
        raise ProtocolError(f"unknown frame type {raw_type}") from None
    if length > max_payload:
        raise ProtocolError(
            f"{frame_type.name} frame of {length} bytes is over the {max_payload}-byte limit"
        )
    if (frame_type in CONTROL_TYPES) != (stream == CONTROL_STREAM):
        where = "stream 0" if frame_type in CONTROL_TYPES else "a stream other than 0"
        raise ProtocolError(f"{frame_type.name} frame on stream {stream}; it belongs on {where}")
    return frame_type, stream, length


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    max_payload: int = MAX_PAYLOAD,
    on_progress: Callable[[], None] | None = None,
) -> Frame:
    """The next frame; ``IncompleteReadError`` when the stream ends, even mid-frame."""
    header = await reader.readexactly(HEADER.size)
    if on_progress:
        on_progress()
    frame_type, stream, length = decode_header(header, max_payload)
    if length <= _READ_PIECE:
        payload = await reader.readexactly(length) if length else b""
    else:
        parts = []
        remaining = length
        while remaining:
            part = await reader.readexactly(min(remaining, _READ_PIECE))
            parts.append(part)
            remaining -= len(part)
            if on_progress:
                on_progress()
        payload = b"".join(parts)
    return Frame(frame_type, stream, payload)
