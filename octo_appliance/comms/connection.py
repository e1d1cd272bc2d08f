"""One established, multiplexed connection; after the handshake both ends are alike.

Either side may call the other: the side that dialed numbers its requests with odd stream ids,
the side that accepted with even ones, so a stream id alone says whose request a frame belongs
to. Each frame is written with a single ``write`` call, so frames of concurrent calls
interleave whole and a large file never holds up PING, EVENT or another call's RESPONSE for
more than one chunk. One reader task dispatches frames; handlers run as their own tasks; event
callbacks run in the calling task, never in the reader, so a slow consumer cannot stall the
connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from octo_appliance.comms import handling, requester
from octo_appliance.comms.call_types import EventCallback, Handler, Response
from octo_appliance.comms.errors import CommsError, ConnectionClosed, PeerLost, ProtocolError
from octo_appliance.comms.framing import (
    CONTROL_STREAM,
    Frame,
    FrameType,
    data_header,
    encode_frame,
    json_frame,
)
from octo_appliance.comms.keepalive import KeepaliveScheduler
from octo_appliance.comms.reader import FrameProtocol
from octo_appliance.comms.settings import CommsSettings
from octo_appliance.comms.transfer import UploadSource

log = logging.getLogger("octo_appliance.comms")
_MAX_STREAM = 2**32 - 1
#: a DATA payload goes to the TLS layer in pieces of at most this many bytes: asyncio's TLS
#: encrypts a write into a memory buffer, copies it out and hands it to the socket, so 1 MiB
#: at once runs through ~3 MiB of buffers, out of a core's cache (bench/send.py)
TLS_WRITE = 256 * 1024


class Connection:
    """A live connection: :meth:`call` the peer, answer its requests with ``handler``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        initiator: bool,
        peer_thumbprint: str,
        peer_hello: dict[str, Any],
        protocol_version: int,
        handler: Handler | None,
        settings: CommsSettings,
        peer_address: str,
        peer_name: str = "",
    ) -> None:
        self._writer = writer
        self.peer_thumbprint = peer_thumbprint
        #: what this side knows the peer as (a listener's verdict on its certificate, e.g.
        #: "target 'web-01'"); the label prefers it to anything the peer says in HELLO
        self.peer_name = peer_name
        self.peer_hello = peer_hello
        self.protocol_version = protocol_version
        self.peer_address = peer_address
        self.settings = settings
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        #: frames are decrypted straight into their buffers from here on (comms/reader.py)
        self._frames = FrameProtocol.adopt(
            reader, transport, max_payload=settings.max_payload, on_progress=self._touch
        )
        self._next_stream = 1 if initiator else 2
        self._calls: dict[int, requester.Call] = {}
        self._incoming: dict[int, handling.Incoming] = {}
        self._closed = asyncio.Event()
        self._reason: PeerLost | None = None
        self._peer_goaway: str | None = None
        self._goaway_sent = False
        self._close_callbacks: list[Callable[[Connection], None]] = []
        now = self._loop.time()
        self._last_rx = self._last_tx = self._last_ping = now
        #: the dialer PINGs after ``ping_interval``, the side that accepted one check later:
        #: on a healthy idle connection only the dialer's PING and the PONG travel
        self._ping_after = settings.ping_interval + (0 if initiator else settings.keepalive_tick)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._spawn(self._read_loop())
        KeepaliveScheduler.for_loop(self._loop).add(
            self, now + self._ping_after, settings.keepalive_tick
        )

    # -- identity and state ------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return str(self.peer_hello.get("id", ""))

    @property
    def label(self) -> str:
        """How messages name the peer: this side's name for it, else its role and HELLO id;
        then short thumbprint and address."""
        if self.peer_name:
            return f"{self.peer_name} ({self.peer_thumbprint[:12]}… at {self.peer_address})"
        role = self.peer_hello.get("role", "peer")
        name = f" {self.peer_id!r}" if self.peer_id else ""
        return f"{role}{name} ({self.peer_thumbprint[:12]}… at {self.peer_address})"

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    @property
    def accepts_calls(self) -> bool:
        """Open, and the peer has not said GOAWAY: a new call would be sent."""
        return not self.is_closed and self._peer_goaway is None

    @property
    def in_flight(self) -> int:
        """Calls this side is waiting on plus requests it is handling."""
        return len(self._calls) + len(self._incoming)

    def add_close_callback(self, callback: Callable[[Connection], None]) -> None:
        """Run ``callback(conn)`` once when the connection closes (at once if it has)."""
        if self.is_closed:
            callback(self)
        else:
            self._close_callbacks.append(callback)

    async def wait_closed(self) -> PeerLost:
        """Wait until the connection is closed and its tasks have ended; the reason."""
        await self._closed.wait()
        current = asyncio.current_task()
        await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)
        assert self._reason is not None
        return self._reason

    # -- calling the peer --------------------------------------------------------------

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        on_event: EventCallback | None = None,
        upload: UploadSource | None = None,
        download_dir: str | Path | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Call ``method`` on the peer; cancelling this coroutine cancels the handler there.

        ``on_event`` gets the handler's events in order, before this returns. ``upload``
        streams a file with the request (a path, bytes, or an opener: see
        :data:`~octo_appliance.comms.transfer.UploadSource`); a file the handler responds
        with is spooled into ``download_dir`` (default: the settings' spool_dir), verified,
        and owned by the caller. Raises CallFailed (the handler failed), CallTimeout,
        TransferError, PeerLost (connection died: whether the handler ran is unknown) or
        ConnectionClosed (not sent).
        """
        return await requester.call(
            self,
            method,
            params,
            on_event=on_event,
            upload=upload,
            download_dir=download_dir,
            timeout=timeout,
        )

    def _new_stream(self) -> int:
        stream = self._next_stream
        if stream > _MAX_STREAM:
            self.close("stream ids exhausted")
            self._check_open()
        self._next_stream += 2
        return stream

    def _check_open(self) -> None:
        if self.is_closed:
            assert self._reason is not None
            raise ConnectionClosed(
                f"the connection to {self.label} is closed ({self._reason.message}); "
                "the request was not sent",
                hint="reconnect and retry",
            )
        if self._peer_goaway is not None:
            raise ConnectionClosed(
                f"{self.label} is going away ({self._peer_goaway}); the request was not sent",
                hint="retry on a new connection",
            )

    # -- writing -----------------------------------------------------------------------

    def _write(self, frame: Frame) -> None:
        self._write_parts(encode_frame(frame))

    def _write_parts(self, *parts: bytes | memoryview) -> None:
        if self._reason is not None:
            raise self._fresh_reason()
        self._writer.writelines(parts)
        self._last_tx = self._loop.time()

    async def _send_data(self, stream: int, chunk: bytes | memoryview) -> None:
        """A DATA frame, its payload never copied into a frame buffer: the header goes to the
        TLS layer with the payload's first piece in one call (one TLS flush and one socket
        send, not a 10-byte record and ``send`` of its own), the rest in pieces of
        ``TLS_WRITE`` bytes, each encrypted and sent before the next is taken, so the TLS
        layer's buffers stay in the CPU's cache. Nothing awaits in between: frames of
        concurrent calls still interleave whole."""
        view = memoryview(chunk)
        self._write_parts(data_header(stream, len(view)), view[:TLS_WRITE])
        for start in range(TLS_WRITE, len(view), TLS_WRITE):
            self._writer.write(view[start : start + TLS_WRITE])
        await self._drain()

    def _write_nowait(self, frame: Frame) -> None:
        """Best effort, never blocks (PING, PONG, CANCEL, GOAWAY)."""
        if not self.is_closed and not self._writer.transport.is_closing():
            self._write(frame)

    async def _drain(self) -> None:
        try:
            await self._frames.drain()
        except (ConnectionError, OSError) as exc:
            if self._reason is not None:
                raise self._fresh_reason() from None
            raise self._lost(f"the connection failed while sending: {exc}") from None

    async def _send(self, frame: Frame) -> None:
        self._write(frame)
        await self._drain()

    # -- reading -----------------------------------------------------------------------

    def _touch(self) -> None:
        self._last_rx = self._loop.time()

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await self._frames.read_frame()
                await self._dispatch(frame)
        except asyncio.IncompleteReadError as exc:
            midway = " in the middle of a frame" if exc.partial else ""
            self._lose(self._lost(f"the peer closed the connection{midway}"))
        except ProtocolError as exc:
            log.warning("protocol error from %s: %s", self.label, exc.message)
            body = {"code": "protocol_error", "message": exc.message}
            self._write_nowait(json_frame(FrameType.ERROR, CONTROL_STREAM, body))
            self._lose(self._lost(f"protocol error: {exc.message}"), graceful=True)
        except _PeerError as exc:
            self._lose(self._lost(f"the peer reported an error and closed: {exc}"))
        except (ConnectionError, OSError) as exc:
            self._lose(self._lost(f"the connection failed: {exc}"))
        except Exception:
            log.exception("unexpected error reading from %s", self.label)
            self._lose(self._lost("internal error in this side's reader (see its log)"))

    async def _dispatch(self, frame: Frame) -> None:
        kind = frame.type
        if frame.stream == CONTROL_STREAM:
            if kind is FrameType.PING:
                self._write_nowait(Frame(FrameType.PONG, CONTROL_STREAM, frame.payload))
            elif kind is FrameType.GOAWAY:
                reason = frame.json().get("reason")
                self._peer_goaway = str(reason) if reason else "no reason given"
                log.info("%s is going away: %s", self.label, self._peer_goaway)
            elif kind is FrameType.ERROR:
                raise _PeerError(str(frame.json().get("message", "no message")))
            elif kind is FrameType.HELLO:
                raise ProtocolError("HELLO after the handshake")
        elif frame.stream % 2 == self._next_stream % 2:
            await requester.on_call_frame(self, frame)
        else:
            await handling.on_request_frame(self, frame)

    # -- keepalive and closing ---------------------------------------------------------

    def keepalive_due(self, now: float) -> float | None:
        """Close as dead or PING if due (the loop's KeepaliveScheduler asks); when to look
        next, None once closed."""
        if self.is_closed:
            return None
        settings, wait = self.settings, self._ping_after
        silent = now - self._last_rx
        if silent >= settings.dead_after:
            log.warning("%s sent nothing for %.1f s: closing as dead", self.label, silent)
            self._lose(
                self._lost(
                    f"no frame for {silent:.1f} s (keepalive limit {settings.dead_after:g} s)",
                    hint="check that the peer is running and the network between the sides",
                )
            )
            return None
        quiet_since = min(self._last_tx, self._last_rx)  # nothing sent, or nothing heard
        if now - quiet_since >= wait and now - self._last_ping >= wait:
            self._last_ping = now
            self._write_nowait(Frame(FrameType.PING, CONTROL_STREAM, b"k"))
        next_ping = max(self._last_ping, min(self._last_tx, self._last_rx)) + wait
        return min(next_ping, self._last_rx + settings.dead_after)

    def close(self, reason: str = "closed by this side") -> None:
        """Say GOAWAY and close now; calls in flight fail with PeerLost."""
        if self.is_closed:
            return
        self._write_nowait(json_frame(FrameType.GOAWAY, CONTROL_STREAM, {"reason": reason}))
        self._lose(
            PeerLost(f"the connection to {self.label} was closed by this side: {reason}"),
            graceful=True,
        )

    async def shutdown(self, reason: str, grace: float) -> None:
        """Say GOAWAY (the peer sends no new requests), let calls finish for up to ``grace``."""
        if self.is_closed:
            return
        if not self._goaway_sent:
            self._goaway_sent = True
            self._write_nowait(json_frame(FrameType.GOAWAY, CONTROL_STREAM, {"reason": reason}))
        deadline = self._loop.time() + grace
        while self.in_flight and not self.is_closed and self._loop.time() < deadline:
            await asyncio.sleep(min(0.05, grace))
        self.close(reason)

    def _lost(self, what: str, hint: str | None = None) -> PeerLost:
        """The reason to report: the first one recorded wins (it is the cause)."""
        if self._reason is not None:
            return self._reason
        goaway = f" after it said it was going away ({self._peer_goaway})"
        return PeerLost(
            f"lost the connection to {self.label}: {what}" + (goaway if self._peer_goaway else ""),
            hint=hint or "the peer may have restarted; retry once it is back",
        )

    def _fresh_reason(self) -> PeerLost:
        """A new exception per raiser: one instance raised in many tasks piles up tracebacks."""
        assert self._reason is not None
        return PeerLost(self._reason.message, hint=self._reason.hint)

    def _lose(self, reason: PeerLost, *, graceful: bool = False) -> None:
        """Close once: fail every call, cancel every handler, drop the transport."""
        if self.is_closed:
            return
        self._reason = reason
        self._closed.set()
        log.info("connection closed: %s", reason.message)
        for call in self._calls.values():
            if not call.done:
                call.fail(self._fresh_reason())
        handling.abort_all(self)
        if graceful:
            self._writer.close()
        else:
            self._writer.transport.abort()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()
        for callback in self._close_callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("close callback failed for %s", self.label)
        self._close_callbacks.clear()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class _PeerError(CommsError):
    """The peer sent ERROR on stream 0: it is closing the connection."""
