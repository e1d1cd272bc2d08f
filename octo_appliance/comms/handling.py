"""The handler side of a :class:`Connection`: requests the peer sends to this side.

A request with ``"upload": true`` is followed by the file's DATA frames and DATA_END; the
handler starts only once the file has verified, so ``request.upload_path`` is always whole.
CANCEL cancels the handler's task: the handler sees ``CancelledError`` (the agent kills the
process tree there). From protocol version 2 ``emit`` waits while ``EVENT_WINDOW`` events are
unacknowledged (EVENT_ACK from the requester): a slow requester slows the handler down. Errors
become an error RESPONSE; nothing the handler did not choose to say (a traceback, an
exception's text) crosses the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from octo_appliance.comms.call_types import IncomingRequest
from octo_appliance.comms.errors import (
    CallFailed,
    MessageTooLarge,
    PeerLost,
    ProtocolError,
    TransferError,
)
from octo_appliance.comms.framing import (
    EVENT_WINDOW,
    FLOW_CONTROL_VERSION,
    Frame,
    FrameType,
    json_frame,
)
from octo_appliance.comms.transfer import FileReceiver, open_for_sending, send_file
from octo_appliance.exceptions import OctoError

if TYPE_CHECKING:
    from octo_appliance.comms.connection import Connection

log = logging.getLogger("octo_appliance.comms")


class Incoming:
    """One request from the peer: receiving its upload, then running its handler."""

    def __init__(self, request: IncomingRequest) -> None:
        self.request = request
        self.receiver: FileReceiver | None = None
        self.task: asyncio.Task[None] | None = None
        #: events sent and not acknowledged yet (protocol version 2), and the wake-up for
        #: an ``emit`` waiting for the requester to catch up
        self.unacked = 0
        self.acked = asyncio.Event()

    def ack(self, body: dict[str, Any]) -> None:
        count = body.get("events")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ProtocolError("EVENT_ACK needs a whole number of events")
        self.unacked = max(self.unacked - count, 0)
        self.acked.set()


async def on_request_frame(conn: Connection, frame: Frame) -> None:
    """Dispatch a frame on a stream the peer opened."""
    kind, stream = frame.type, frame.stream
    incoming = conn._incoming.get(stream)
    if kind is FrameType.REQUEST:
        if incoming is not None:
            raise ProtocolError(f"REQUEST on stream {stream}, which is already in use")
        _start(conn, stream, frame.json())
    elif kind is FrameType.CANCEL:
        if incoming is not None:
            _cancel(conn, stream, incoming)
    elif kind is FrameType.EVENT_ACK:
        if incoming is not None:
            incoming.ack(frame.json())
    elif kind in (FrameType.DATA, FrameType.DATA_END):
        if incoming is None:
            return  # the request was already refused or cancelled
        if incoming.receiver is None:
            raise ProtocolError(f"{kind.name} on stream {stream}, whose request has no upload")
        if kind is FrameType.DATA:
            await incoming.receiver.write(frame.payload)
            return
        try:
            # still reachable through ``incoming`` meanwhile, so CANCEL or a lost
            # connection aborts it and finish() fails instead of leaving a file
            path = await incoming.receiver.finish(frame.json())
        except TransferError as exc:
            if conn._incoming.pop(stream, None) is not None:
                _reject(conn, stream, "transfer_failed", exc.message, exc.hint)
            return
        incoming.request.upload_sha256 = incoming.receiver.sha256
        incoming.receiver, incoming.request.upload_path = None, path
        incoming.task = conn._spawn(_run(conn, stream, incoming))
    else:
        raise ProtocolError(f"{kind.name} frame on a stream the peer opened")


def abort_all(conn: Connection) -> None:
    """The connection is gone: stop receiving uploads (handler tasks are cancelled with it)."""
    for incoming in conn._incoming.values():
        if incoming.receiver is not None:
            incoming.receiver.abort()
            incoming.receiver = None


def _start(conn: Connection, stream: int, body: dict[str, Any]) -> None:
    method, params = body.get("method"), body.get("params", {})
    if not isinstance(method, str) or not isinstance(params, dict):
        _reject(conn, stream, "bad_request", "method must be text, params an object")
        return
    if conn._goaway_sent:
        _reject(
            conn, stream, "going_away", "this side is shutting down", "retry on a new connection"
        )
        return

    flow_control = conn.protocol_version >= FLOW_CONTROL_VERSION

    async def send_event(event: dict[str, Any]) -> None:
        frame = json_frame(FrameType.EVENT, stream, event)
        if flow_control:
            while incoming.unacked >= EVENT_WINDOW:  # the requester is behind: wait for it
                incoming.acked.clear()
                await incoming.acked.wait()
            incoming.unacked += 1
        await conn._send(frame)

    request = IncomingRequest(
        method=method,
        params=params,
        stream_id=stream,
        peer_thumbprint=conn.peer_thumbprint,
        peer_hello=conn.peer_hello,
        send_event=send_event,
    )
    incoming = Incoming(request)
    if body.get("upload"):
        try:
            incoming.receiver = FileReceiver(conn.settings.spool_dir, f"the upload for {method}")
        except TransferError as exc:
            _reject(conn, stream, "transfer_failed", exc.message, exc.hint)
            return
        conn._incoming[stream] = incoming
    else:
        conn._incoming[stream] = incoming
        incoming.task = conn._spawn(_run(conn, stream, incoming))


def _cancel(conn: Connection, stream: int, incoming: Incoming) -> None:
    if incoming.task is not None:
        incoming.task.cancel()
    else:
        del conn._incoming[stream]
        if incoming.receiver is not None:
            incoming.receiver.abort()


async def _run(conn: Connection, stream: int, incoming: Incoming) -> None:
    request = incoming.request
    try:
        if conn._handler is None:
            raise CallFailed("no_handler", "this side does not handle requests")
        result = await conn._handler(request)
        has_file = request.response_file is not None
        # Encode first: a result that is not JSON fails before a byte of the file is sent.
        response = json_frame(
            FrameType.RESPONSE,
            stream,
            {"result": result, "file": has_file},
            max_payload=conn.settings.max_payload,
        )
        if request.response_file is not None:
            await _send_file(conn, stream, request.response_file)
        await conn._send(response)
    except asyncio.CancelledError:
        _reject(conn, stream, "cancelled", "cancelled by the requester")
        raise
    except PeerLost:
        return
    except CallFailed as exc:
        await _send_error(conn, stream, exc.code, exc.message, exc.hint)
    except MessageTooLarge as exc:
        await _send_error(conn, stream, "bad_result", exc.message, exc.hint)
    except TransferError as exc:
        await _send_error(conn, stream, "transfer_failed", exc.message, exc.hint)
    except OctoError as exc:
        await _send_error(conn, stream, "error", exc.message, exc.hint)
    except Exception as exc:
        log.exception("handler for %r from %s failed", request.method, conn.label)
        role = "agent" if conn.peer_hello.get("role") == "appliance" else "other side"
        await _send_error(
            conn,
            stream,
            "internal",
            f"unexpected {type(exc).__name__} while handling {request.method!r}",
            f"see the {role}'s log",
        )
    finally:
        conn._incoming.pop(stream, None)
        if request.upload_path is not None:
            request.upload_path.unlink(missing_ok=True)
        if request.response_file is not None and request.delete_response_file:
            request.response_file.unlink(missing_ok=True)


async def _send_file(conn: Connection, stream: int, path: Path) -> None:
    async def send_chunk(chunk: bytes | memoryview) -> None:
        await conn._send_data(stream, chunk)

    file = open_for_sending(path, "the response file")
    end = await send_file(file, conn.settings.chunk_size, send_chunk)
    await conn._send(json_frame(FrameType.DATA_END, stream, end))


def _error_response(stream: int, code: str, message: str, hint: str | None) -> Frame:
    error: dict[str, Any] = {"code": code, "message": message}
    if hint:
        error["hint"] = hint
    return json_frame(FrameType.RESPONSE, stream, {"error": error})


def _reject(
    conn: Connection, stream: int, code: str, message: str, hint: str | None = None
) -> None:
    """Refuse from the reader task, which must never wait for the peer to read (deadlock)."""
    conn._write_nowait(_error_response(stream, code, message, hint))


async def _send_error(
    conn: Connection, stream: int, code: str, message: str, hint: str | None = None
) -> None:
    with contextlib.suppress(PeerLost):  # the connection is gone: nobody to tell
        await conn._send(_error_response(stream, code, message, hint))
