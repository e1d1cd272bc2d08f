"""The requester side of a :class:`Connection`: calls this side makes to the peer.

The reader task feeds each call's ``inbox`` (events, the response, or a failure); the calling
task drains it, so event callbacks run in the caller's task and a slow consumer never stalls
the reader. From protocol version 2 the caller acknowledges the events it has handled
(EVENT_ACK) and the handler stays within ``EVENT_WINDOW`` of that, so a slow consumer holds the
handler back and the inbox never grows past the window. A downloaded file stays reachable from
its call until it has verified, so a call that ends first (cancelled, timed out, connection
lost) always deletes it.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from octo_appliance.comms.call_types import EventCallback, Response
from octo_appliance.comms.errors import CallFailed, CallTimeout, ProtocolError, TransferError
from octo_appliance.comms.framing import (
    EVENT_ACK_EVERY,
    FLOW_CONTROL_VERSION,
    Frame,
    FrameType,
    json_frame,
)
from octo_appliance.comms.transfer import FileReceiver, UploadSource, open_upload, send_file

if TYPE_CHECKING:
    from octo_appliance.comms.connection import Connection


class Call:
    """State of one outgoing call."""

    def __init__(self, method: str, download_dir: Path) -> None:
        self.method = method
        self.download_dir = download_dir
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.receiver: FileReceiver | None = None
        self.file_path: Path | None = None
        #: True once nothing more is expected from the peer (response, failure or CANCEL)
        self.done = False

    def fail(self, error: BaseException) -> None:
        self.done = True
        self.inbox.put_nowait(("error", error))


async def call(
    conn: Connection,
    method: str,
    params: dict[str, Any] | None,
    *,
    on_event: EventCallback | None,
    upload: UploadSource | None,
    download_dir: str | Path | None,
    timeout: float | None,
) -> Response:
    # opened first: an opener may await a worker thread, and nothing below may await until
    # the request is written (the connection is checked open just before)
    upload_file = await open_upload(upload, "the upload") if upload is not None else None
    try:
        conn._check_open()
        body: dict[str, Any] = {"method": method, "params": params or {}}
        if upload is not None:
            body["upload"] = True
        stream = conn._new_stream()
        request = json_frame(FrameType.REQUEST, stream, body, max_payload=conn.settings.max_payload)
    except BaseException:
        if upload_file is not None:
            upload_file.close()
        raise
    state = Call(method, Path(download_dir) if download_dir else conn.settings.spool_dir)
    conn._calls[stream] = state
    deadline = asyncio.timeout(timeout)
    delivered = False
    try:
        async with deadline:
            conn._write(request)  # no await since _check_open: the connection is still open
            await conn._drain()
            if upload_file is not None:
                file, upload_file = upload_file, None

                async def send_chunk(chunk: bytes | memoryview) -> None:
                    await conn._send_data(stream, chunk)

                end = await send_file(file, conn.settings.chunk_size, send_chunk)
                await conn._send(json_frame(FrameType.DATA_END, stream, end))
            response = await _await_response(conn, stream, state, on_event)
            delivered = True
            return response
    except BaseException as exc:
        if not state.done:  # cancelled, timed out, or a callback failed: tell the handler
            cancel(conn, stream, state)
        if isinstance(exc, TimeoutError) and deadline.expired():
            raise CallTimeout(
                f"{method} on {conn.label} did not finish within {timeout:g} s; "
                "the handler was asked to cancel",
                hint="raise the timeout for long operations, or check the peer's load",
            ) from None
        raise
    finally:
        if upload_file is not None:
            upload_file.close()
        conn._calls.pop(stream, None)
        if state.receiver is not None:
            state.receiver.abort()
        if state.file_path is not None and not delivered:
            state.file_path.unlink(missing_ok=True)


def cancel(conn: Connection, stream: int, state: Call) -> None:
    state.done = True
    conn._write_nowait(Frame(FrameType.CANCEL, stream))


async def on_call_frame(conn: Connection, frame: Frame) -> None:
    """Dispatch a frame on a stream this side opened."""
    kind = frame.type
    if kind in (FrameType.REQUEST, FrameType.CANCEL, FrameType.EVENT_ACK):
        raise ProtocolError(f"{kind.name} frame on a stream this side opened")
    state = conn._calls.get(frame.stream)
    if state is None or state.done:
        return  # cancelled, timed out or failed: late frames are expected
    if kind is FrameType.EVENT:
        state.inbox.put_nowait(("event", frame.json()))
    elif kind is FrameType.RESPONSE:
        state.done = True
        state.inbox.put_nowait(("response", frame.json()))
    else:
        try:
            await _receive_download(conn, state, frame)
        except TransferError as exc:
            if not state.done:
                cancel(conn, frame.stream, state)
                state.fail(exc)


async def _receive_download(conn: Connection, state: Call, frame: Frame) -> None:
    if state.file_path is not None:
        raise TransferError(f"{conn.label} sent a second file for {state.method}")
    if state.receiver is None:
        state.receiver = FileReceiver(state.download_dir, f"the file from {state.method}")
    if frame.type is FrameType.DATA:
        await state.receiver.write(frame.payload)
    else:
        path = await state.receiver.finish(frame.json())
        state.receiver, state.file_path = None, path


async def _await_response(
    conn: Connection, stream: int, state: Call, on_event: EventCallback | None
) -> Response:
    acks = conn.protocol_version >= FLOW_CONTROL_VERSION
    handled = 0
    while True:
        kind, value = await state.inbox.get()
        if kind == "event":
            if on_event is not None:
                outcome = on_event(value)
                if inspect.isawaitable(outcome):
                    await outcome
            handled += 1
            if acks and handled >= EVENT_ACK_EVERY and not state.done:
                conn._write_nowait(json_frame(FrameType.EVENT_ACK, stream, {"events": handled}))
                handled = 0
        elif kind == "error":
            raise value
        else:
            return _response_from(conn, state, value)


def _response_from(conn: Connection, state: Call, body: dict[str, Any]) -> Response:
    error = body.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise ProtocolError(f"{conn.label} sent a malformed error response")
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
        hint = error.get("hint") if isinstance(error.get("hint"), str) else None
        text = f"{state.method} on {conn.label} failed: {message}"
        if code == "transfer_failed":
            raise TransferError(text, hint=hint)
        raise CallFailed(code, text, hint=hint)
    if body.get("file") and state.file_path is None:
        raise TransferError(
            f"{state.method} on {conn.label} announced a file that did not arrive",
            hint="retry; if it keeps failing, upgrade the peer",
        )
    return Response(body.get("result"), state.file_path)
