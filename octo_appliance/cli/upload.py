"""One streamed HTTP/1.1 upload that hears the server's answer even before the body is sent.

The appliance refuses a package as soon as it knows it must (a 409 once the file name has
arrived, a 413 once the size limit is crossed, a 403 at once) and then stops reading. httpx
sends the whole body before it reads a response, so it would sit blocked on a full socket and
report a timeout instead of the reason. Here the body is written while the response is read
at the same time (asyncio, with h11 for the HTTP framing); whichever ends first decides, and an
early answer stops the sending. h11 comes with httpx and Hypercorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import h11

from octo_appliance.exceptions import OctoError

READ_SIZE = 256 * 1024
#: how much of the file is read and sent at a time
UPLOAD_CHUNK = 1024 * 1024
#: after the connection broke while sending: how long to wait for an answer already on its way
LAST_WORDS_SECONDS = 5.0


class UploadInterrupted(OctoError):
    """The upload's connection or file failed; the client turns each kind into a
    :class:`~octo_appliance.cli.client.ClientError` with a hint."""


class FileChanged(UploadInterrupted):
    """The file ended before the size it had when the upload started."""


class UploadStalled(UploadInterrupted):
    """The server took no more of the body for ``seconds`` and gave no answer either."""

    def __init__(self, sent: int, seconds: float) -> None:
        super().__init__(f"no progress for {seconds:g} s after {sent} bytes")
        self.sent = sent
        self.seconds = seconds


class NoAnswer(UploadInterrupted):
    """The body was sent but no answer came in time."""


class ClosedEarly(UploadInterrupted):
    """The server closed the connection after ``sent`` body bytes with no answer we could read.

    A server that refuses before it reads the body and then closes makes the client's TCP
    stack drop its answer (the unread body turns the close into a reset), so this is the
    usual face of a refusal decided from the headers alone.
    """

    def __init__(self, sent: int) -> None:
        super().__init__(f"closed after {sent} bytes")
        self.sent = sent


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    content: bytes


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    context: ssl.SSLContext


class FileForm:
    """A ``multipart/form-data`` body with one field, ``file``, read from ``handle`` in chunks.

    Its length is known before the first byte (the file's size at the start), so it goes as
    Content-Length; ``progress(sent, size)`` hears each chunk.
    """

    def __init__(
        self,
        handle: BinaryIO,
        size: int,
        file_name: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.handle = handle
        self.size = size
        self.progress = progress
        boundary = secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self.head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{quote(file_name)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()

    @property
    def length(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), ("Content-Length", str(self.length))]

    def body(self) -> Iterator[bytes]:
        yield self.head
        sent = 0
        if self.progress is not None and self.size == 0:
            self.progress(0, 0)
        while sent < self.size:
            chunk = self.handle.read(min(UPLOAD_CHUNK, self.size - sent))
            if not chunk:
                raise FileChanged("the file ended before its size at the start")
            sent += len(chunk)
            if self.progress is not None:
                self.progress(sent, self.size)
            yield chunk
        yield self.tail


def quote(name: str) -> str:
    """A file name for a quoted ``Content-Disposition`` parameter (as browsers escape it)."""
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def post_streamed(
    target: Target,
    path: str,
    headers: list[tuple[str, str]],
    body: Iterator[bytes],
    *,
    connect_timeout: float,
    stall_timeout: float,
    answer_timeout: float,
) -> Answer:
    """POST ``body`` (its length must be in ``headers``) and return the server's answer."""
    exchange = _Exchange(target, path, headers, body)
    # asyncio logs a warning for every write to a connection the server has closed; the
    # outcome is reported once, as an error, instead
    asyncio_log = logging.getLogger("asyncio")
    level = asyncio_log.level
    asyncio_log.setLevel(logging.ERROR)
    try:
        return asyncio.run(exchange.run(connect_timeout, stall_timeout, answer_timeout))
    finally:
        asyncio_log.setLevel(level)


class _Exchange:
    """One request: a task sends the body while another reads the answer."""

    def __init__(
        self, target: Target, path: str, headers: list[tuple[str, str]], body: Iterator[bytes]
    ) -> None:
        self.target = target
        self.body = body
        self.sent = 0
        host = f"[{target.host}]" if ":" in target.host else target.host
        self.request = h11.Request(
            method="POST", target=path, headers=[("Host", f"{host}:{target.port}"), *headers]
        )
        self.connection = h11.Connection(our_role=h11.CLIENT)
        #: set when the receiving side ends (an answer, or the connection closed)
        self.over = asyncio.Event()

    async def run(
        self, connect_timeout: float, stall_timeout: float, answer_timeout: float
    ) -> Answer:
        target = self.target
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(
                target.host, target.port, ssl=target.context, server_hostname=target.host
            )
        sending = asyncio.create_task(self._send(writer, stall_timeout))
        answering = asyncio.create_task(self._receive(reader))
        try:
            await asyncio.wait({sending, answering}, return_when=asyncio.FIRST_COMPLETED)
            if answering.done():  # an answer (or a close) before the body ended: it decides
                writer.transport.abort()  # a sender blocked on a full socket wakes up at once
                await _finish(sending)
                try:
                    return answering.result()
                except (NoAnswer, OSError, ssl.SSLError):
                    raise ClosedEarly(self.sent) from None
            failure = sending.exception()
            if failure is not None and not isinstance(failure, OSError | ssl.SSLError):
                await _finish(answering)
                raise failure  # the file changed, or the server stalled
            # all sent, or the connection broke while sending: the answer may be on its way
            wait = answer_timeout if failure is None else min(answer_timeout, LAST_WORDS_SECONDS)
            try:
                async with asyncio.timeout(wait):
                    return await answering
            except TimeoutError:
                if failure is None:
                    raise NoAnswer(f"no answer within {answer_timeout:g} s") from None
                raise ClosedEarly(self.sent) from None
            except (NoAnswer, OSError, ssl.SSLError):
                raise ClosedEarly(self.sent) from None
        finally:
            # abort, not close: close would first flush what the server no longer reads and
            # wait for its TLS close_notify; the connection is never reused anyway
            writer.transport.abort()
            await _finish(sending)
            await _finish(answering)

    async def _send(self, writer: asyncio.StreamWriter, stall_timeout: float) -> None:
        writer.write(self.connection.send(self.request) or b"")
        for chunk in self.body:
            # yield every chunk: drain() does not while the buffer is low, and the answer
            # must be read before a reset (our data hitting a closed socket) discards it
            await asyncio.sleep(0)
            if self.over.is_set():
                return
            writer.write(self.connection.send(h11.Data(data=chunk)) or b"")
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                async with asyncio.timeout(stall_timeout):
                    await writer.drain()
            except TimeoutError:
                raise UploadStalled(self.sent, stall_timeout) from None
            self.sent += len(chunk)
        writer.write(self.connection.send(h11.EndOfMessage()) or b"")
        await writer.drain()

    async def _receive(self, reader: asyncio.StreamReader) -> Answer:
        try:
            return await self._read_answer(reader)
        finally:
            self.over.set()

    async def _read_answer(self, reader: asyncio.StreamReader) -> Answer:
        status, content = 0, bytearray()
        headers: list[tuple[str, str]] = []
        while True:
            try:
                event = self.connection.next_event()
            except h11.RemoteProtocolError:  # end-of-file where h11 wanted a response
                raise NoAnswer("the appliance closed the connection without an answer") from None
            if event is h11.NEED_DATA:
                self.connection.receive_data(await reader.read(READ_SIZE))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                return Answer(status, headers, bytes(content))
            elif isinstance(event, h11.ConnectionClosed):
                raise NoAnswer("the appliance closed the connection without an answer")
            # h11.InformationalResponse (100 Continue): keep reading


async def _finish(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` if it still runs and wait for it, whatever it ends with."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
