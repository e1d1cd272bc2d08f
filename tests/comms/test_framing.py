"""The frame format on its own: header layout, limits, and what a reader refuses."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octo_appliance.comms import MessageTooLarge, ProtocolError
from octo_appliance.comms.framing import (
    HEADER,
    MAX_PAYLOAD,
    Frame,
    FrameType,
    decode_header,
    encode_frame,
    json_frame,
    read_frame,
)


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_header_layout_is_type_flags_stream_length_big_endian() -> None:
    frame = Frame(FrameType.DATA, 7, b"abc")

    assert encode_frame(frame) == bytes([5, 0, 0, 0, 0, 7, 0, 0, 0, 3]) + b"abc"
    assert HEADER.size == 10


@given(
    kind=st.sampled_from([t for t in FrameType if t not in {1, 8, 9, 10, 11}]),
    stream=st.integers(1, 2**32 - 1),
    payload=st.binary(max_size=2000),
)
async def test_stream_frames_round_trip(kind: FrameType, stream: int, payload: bytes) -> None:
    frame = Frame(kind, stream, payload)

    assert await read_frame(_reader(encode_frame(frame))) == frame


async def test_large_payload_is_read_in_pieces_with_progress() -> None:
    ticks: list[None] = []
    frame = Frame(FrameType.DATA, 1, bytes(MAX_PAYLOAD))

    read = await read_frame(_reader(encode_frame(frame)), on_progress=lambda: ticks.append(None))

    assert read == frame
    assert len(ticks) > 10


async def test_frame_cut_off_is_an_incomplete_read() -> None:
    data = encode_frame(Frame(FrameType.DATA, 1, b"x" * 100))[:50]

    with pytest.raises(asyncio.IncompleteReadError):
        await read_frame(_reader(data))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (struct.pack(">BBII", 5, 0, 1, MAX_PAYLOAD + 1), "over the 1048576-byte limit"),
        (struct.pack(">BBII", 0, 0, 1, 0), "unknown frame type 0"),
        (struct.pack(">BBII", 8, 0, 3, 0), "PING frame on stream 3"),
        (struct.pack(">BBII", 2, 0, 0, 0), "REQUEST frame on stream 0"),
    ],
)
def test_bad_headers_are_protocol_errors(header: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_header(header)


def test_flags_are_ignored_on_receipt() -> None:
    assert decode_header(struct.pack(">BBII", 5, 0xFF, 1, 0)) == (FrameType.DATA, 1, 0)


@pytest.mark.parametrize("payload", [b"[1, 2]", b"\xff\xfe", b"{"])
def test_json_payload_must_be_an_object(payload: bytes) -> None:
    with pytest.raises(ProtocolError, match="EVENT frame payload"):
        Frame(FrameType.EVENT, 1, payload).json()


def test_json_frame_refuses_oversize_and_non_json() -> None:
    with pytest.raises(MessageTooLarge, match="frame limit"):
        json_frame(FrameType.EVENT, 1, {"x": "y" * 100}, max_payload=50)
    with pytest.raises(MessageTooLarge, match="cannot be sent as JSON"):
        json_frame(FrameType.EVENT, 1, {"x": object()})
    with pytest.raises(MessageTooLarge, match="cannot be sent as JSON"):
        json_frame(FrameType.EVENT, 1, {"x": float("nan")})
