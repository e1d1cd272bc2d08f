"""Frames received straight into their buffers: an established connection's protocol.

Why: ``asyncio.StreamReader`` copied every byte of a 1 MiB DATA frame three times on its way
(TLS plaintext -> its buffer -> ``readexactly`` -> the joined frame). Here the TLS layer
decrypts into the buffer the bytes stay in (asyncio's ``BufferedProtocol``): headers and small
frames into a scratch buffer, a large frame's payload into a buffer of its own. DATA
payloads use pooled 1 MiB buffers that the file receiver gives back once it has hashed and
written them, so a transfer neither allocates nor zero-fills memory per frame. The wire format
is docs/protocol.md's, unchanged. The scratch buffer is shared by the connections of a thread
(the TLS layer fills it and this protocol parses it in one call, never interleaved); a
connection keeps only the bytes of an incomplete small frame, so thousands of idle
connections hold no buffer of their own.

A connection does its TLS handshake and HELLO exchange on asyncio's streams and then adopts
this protocol (:meth:`FrameProtocol.adopt`), taking over what the stream had buffered.
Flow control: reading pauses while a frame's worth of payload waits for the consumer (a slow
handler or a slow disk holds the peer back through TCP instead of filling memory), and
writers wait in :meth:`FrameProtocol.drain` while the transport's write buffer is full.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from typing import Any

from octo_appliance.comms.errors import ProtocolError
from octo_appliance.comms.framing import (
    HEADER,
    MAX_PAYLOAD,
    Frame,
    FrameType,
    Payload,
    decode_header,
)
from octo_appliance.comms.readbuffer import thread_buffer

#: plaintext decrypted into the scratch buffer at once: one TLS record, so the start of a
#: large frame's payload read together with its header (then copied out) is at most this
READ_AHEAD = 16 * 1024
#: payloads up to this size are parsed in the scratch buffer and copied out as ``bytes``
SMALL_PAYLOAD = READ_AHEAD
_SCRATCH = 4 * READ_AHEAD
#: reading pauses while this many payload bytes (or this many frames) wait for the consumer
QUEUE_HIGH = MAX_PAYLOAD
QUEUE_FRAMES = 256


class _Pooled(bytearray):
    """A DATA buffer from :data:`POOL`: only these go back to it."""


class BufferPool:
    """Reused DATA payload buffers: at most ``keep`` are held, and none once no transfer
    is running (``users``: the file receivers alive), so an idle process holds nothing."""

    def __init__(self, size: int, keep: int) -> None:
        self.size, self.keep = size, keep
        self.users = 0
        self._free: list[_Pooled] = []

    def take(self) -> bytearray:
        return self._free.pop() if self._free else _Pooled(self.size)

    def give(self, chunks: Iterable[Payload]) -> None:
        """Return the pooled buffers among ``chunks``: their content is no longer needed."""
        if self.users <= 0:
            return
        for chunk in chunks:
            owner = chunk.obj if isinstance(chunk, memoryview) else None
            if isinstance(owner, _Pooled) and len(self._free) < self.keep:
                self._free.append(owner)

    def join(self) -> None:
        self.users += 1

    def leave(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.users = 0
            self._free.clear()


#: per process: a 4 MiB batch being hashed and written, the next being gathered, and the
#: frames in between fit
POOL = BufferPool(MAX_PAYLOAD, keep=12)


class FrameProtocol(asyncio.BufferedProtocol):
    """Parses frames out of what the TLS layer decrypts into the buffers it is given."""

    def __init__(
        self,
        transport: asyncio.Transport,
        *,
        max_payload: int,
        on_progress: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._max_payload = max_payload
        self._on_progress = on_progress
        # the start of an incomplete small frame (or header), kept between reads
        self._pending = b""
        # the large payload being received: where bytes go, how many arrived, what is handed on
        self._payload: memoryview | None = None
        self._filled = 0
        self._out: Payload = b""
        self._kind, self._stream = FrameType.DATA, 0
        self._frames: collections.deque[Frame] = collections.deque()
        self._queued = 0
        self._ended: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._lost = False
        self._drainers: list[asyncio.Future[None]] = []

    @classmethod
    def adopt(
        cls,
        reader: asyncio.StreamReader,
        transport: asyncio.Transport,
        *,
        max_payload: int,
        on_progress: Callable[[], None],
    ) -> FrameProtocol:
        """Take ``transport`` over from the stream ``reader`` was fed by, with what it holds.

        asyncio has no public way to take a StreamReader's buffer or its protocol's state, so
        they are read from its attributes (CPython 3.11-3.13 keep these names).
        """
        protocol = cls(transport, max_payload=max_payload, on_progress=on_progress)
        previous: Any = transport.get_protocol()
        protocol._writing_paused = bool(getattr(previous, "_paused", False))
        lost = bool(getattr(previous, "_connection_lost", False))
        transport.set_protocol(protocol)
        if not transport.is_reading():  # the stream paused it (it held a lot): ours decides
            transport.resume_reading()
        protocol._feed(bytes(getattr(reader, "_buffer", b"")))
        error = reader.exception()
        if error is not None or lost:
            protocol.connection_lost(error if isinstance(error, Exception) else None)
        elif getattr(reader, "_eof", False):
            protocol.eof_received()
        return protocol

    # -- what the TLS layer calls --------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._payload is not None:
            return self._payload[self._filled :]
        view = _scratch()
        if self._ended is not None:  # broken stream: what still arrives is dropped
            return view[:READ_AHEAD]
        kept = len(self._pending)
        view[:kept] = self._pending
        return view[kept : kept + READ_AHEAD]

    def buffer_updated(self, nbytes: int) -> None:
        self._on_progress()
        if self._ended is not None:
            return
        if self._payload is None:
            self._parse(len(self._pending) + nbytes)
            return
        self._filled += nbytes
        if self._filled == len(self._payload):
            self._payload = None
            out, self._out = self._out, b""
            self._push(Frame(self._kind, self._stream, out))

    def eof_received(self) -> bool:
        self._finish(self._eof_error())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._finish(exc if exc is not None else self._eof_error())
        for waiter in self._drainers:
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("Connection lost"))
        self._drainers.clear()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        for waiter in self._drainers:
            if not waiter.done():
                waiter.set_result(None)
        self._drainers.clear()

    # -- what the connection calls -------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Payload bytes parsed and waiting for :meth:`read_frame`."""
        return self._queued

    async def read_frame(self) -> Frame:
        """The next frame; frames that arrived are delivered before the end is raised:
        ``IncompleteReadError`` (the peer closed, ``partial`` non-empty mid-frame),
        ``ProtocolError`` or the transport's error."""
        while not self._frames:
            if self._ended is not None:
                raise self._ended
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame = self._frames.popleft()
        self._queued -= len(frame.payload)
        if self._reading_paused and not self._backlogged():
            self._reading_paused = False
            self._transport.resume_reading()
        return frame

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        if self._lost:
            raise ConnectionResetError("Connection lost")
        if self._transport.is_closing():
            await asyncio.sleep(0)  # lets connection_lost run, as StreamWriter.drain does
            if self._lost:
                raise ConnectionResetError("Connection lost")
        if not self._writing_paused:
            return
        waiter = self._loop.create_future()
        self._drainers.append(waiter)
        await waiter

    # -- parsing -------------------------------------------------------------------------

    def _parse(self, end: int) -> None:
        """Frames out of the shared scratch buffer's first ``end`` bytes."""
        view, start = _scratch(), 0
        while end - start >= HEADER.size:
            try:
                kind, stream, length = decode_header(
                    view[start : start + HEADER.size], self._max_payload
                )
            except ProtocolError as exc:
                self._finish(exc)
                return
            body = start + HEADER.size
            if end - body >= length:
                self._push(Frame(kind, stream, bytes(view[body : body + length])))
                start = body + length
            elif length > SMALL_PAYLOAD:
                self._begin_payload(kind, stream, length, view[body:end])
                start = end
            else:
                break
        self._pending = bytes(view[start:end])

    def _begin_payload(self, kind: FrameType, stream: int, length: int, have: memoryview) -> None:
        buffer: bytearray
        if kind is FrameType.DATA and length <= POOL.size:
            buffer = POOL.take()
            self._payload = self._out = memoryview(buffer)[:length]
        else:  # JSON is parsed from a bytearray (json.loads takes no memoryview)
            buffer = self._out = bytearray(length)
            self._payload = memoryview(buffer)
        self._payload[: len(have)] = have
        self._kind, self._stream, self._filled = kind, stream, len(have)

    def _feed(self, data: bytes) -> None:
        """Bytes that arrived before this protocol did, as if the TLS layer delivered them."""
        view = memoryview(data)
        while view and self._ended is None:
            target = self.get_buffer(len(view))
            count = min(len(target), len(view))
            target[:count] = view[:count]
            self.buffer_updated(count)
            view = view[count:]

    def _push(self, frame: Frame) -> None:
        self._frames.append(frame)
        self._queued += len(frame.payload)
        self._wake()
        if not self._reading_paused and self._backlogged():
            self._reading_paused = True
            self._transport.pause_reading()

    def _backlogged(self) -> bool:
        return self._queued >= QUEUE_HIGH or len(self._frames) >= QUEUE_FRAMES

    def _finish(self, end: BaseException) -> None:
        """The stream is over (the first cause wins); the consumer gets it after the frames."""
        if self._ended is None:
            self._ended = end  # what still arrives is decrypted and dropped: the TLS
            # shutdown of a closing connection must not find unread records in its way
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _eof_error(self) -> asyncio.IncompleteReadError:
        if self._payload is not None:
            return asyncio.IncompleteReadError(self._payload[: self._filled].tobytes(), None)
        return asyncio.IncompleteReadError(self._pending, None)


def _scratch() -> memoryview:
    """This thread's scratch buffer (each thread runs its own event loop, if any)."""
    return thread_buffer("frame-scratch", _SCRATCH)
