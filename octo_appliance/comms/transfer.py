"""Streaming files as DATA frames, verified by length and SHA-256 on receipt.

The receiver spools to ``<dir>/octo-comms-*.part`` and renames the file (dropping ``.part``)
only when DATA_END's length and hash match what arrived; on any failure the partial file is
deleted, so a path handed to a caller is always a whole, verified file. Disk I/O and hashing
run in a worker thread: a large transfer never stalls the event loop that serves other agents.
The next chunks are received while the thread writes, and go to it together once it is free
(up to ``WRITE_BATCH`` bytes: one hop per batch, not per frame, when the disk is the slower
side); the chunks' pooled buffers go back to the connection's reader once written
(comms/reader.py).

What a sender streams (:data:`UploadSource`) is a file path, bytes already in memory, or an
*opener*: a function returning a fresh readable binary stream. The opener lets content that
must not sit on disk in the clear (a package decrypted on the fly) stream straight from its
source; it is called in a worker thread, once per attempt (a polling agent's request that is
re-queued opens it again), and the stream is closed when the transfer ends. Content whose
SHA-256 is already known (:class:`KnownContent` in memory, :class:`KnownStream` from an
opener) is not hashed again on the way out.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias

from octo_appliance.comms.errors import TransferError
from octo_appliance.comms.framing import Payload
from octo_appliance.comms.reader import POOL

_SHA256 = re.compile(r"[0-9a-f]{64}")
PART_SUFFIX = ".part"
#: at most this many bytes of received chunks wait for the worker thread: then the receiver
#: waits for it (a slow disk holds the peer back)
WRITE_BATCH = 4 * 1024 * 1024

#: a path, bytes in memory, or a function that opens a fresh binary stream (see above)
UploadSource: TypeAlias = str | os.PathLike[str] | bytes | Callable[[], BinaryIO]


class KnownContent(bytes):
    """Bytes whose SHA-256 is already known (a package read once and sent to many targets).

    Sent as memory slices with no worker-thread hop and no hashing: the DATA_END carries the
    known digest, and the receiver still hashes what arrives and refuses a mismatch, so a
    wrong digest fails the transfer, never corrupts it.
    """

    sha256: str

    def __new__(cls, data: bytes, sha256: str) -> KnownContent:
        content = super().__new__(cls, data)
        content.sha256 = sha256
        return content


class _KnownReader(io.RawIOBase):
    """Reads slices of a :class:`KnownContent` (no copy of the whole)."""

    def __init__(self, content: KnownContent) -> None:
        super().__init__()
        self._view = memoryview(content)
        self._position = 0
        self.end = {"length": len(content), "sha256": content.sha256}

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self.read_view(size).tobytes()

    def read_view(self, size: int | None = -1) -> memoryview:
        """The next slice, uncopied (the content is immutable and outlives the transfer)."""
        stop = len(self._view) if size is None or size < 0 else self._position + size
        chunk = self._view[self._position : stop]
        self._position += len(chunk)
        return chunk

    def close(self) -> None:
        # not released: slices of it may still wait in the TLS layer's write backlog
        super().close()


class KnownStream:
    """An opener (see :data:`UploadSource`) whose content's SHA-256 is already known: a
    package too large to keep in memory, decrypted from the feed for each target.

    Streamed without hashing it again on this side (SHA-256 costs more CPU than the TLS
    encryption here: bench/send.py); the DATA_END carries the known digest and the receiver,
    which hashes what arrives anyway, refuses a mismatch.
    """

    def __init__(self, opener: Callable[[], BinaryIO], sha256: str) -> None:
        self._opener = opener
        self.sha256 = sha256

    def __call__(self) -> BinaryIO:
        return self._opener()


class _KnownStreamReader(io.RawIOBase):
    """The stream a :class:`KnownStream` opened, with the digest it is sent under."""

    def __init__(self, stream: BinaryIO, sha256: str) -> None:
        super().__init__()
        self._stream = stream
        self.sha256 = sha256

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._stream.read(-1 if size is None else size)

    def close(self) -> None:
        self._stream.close()
        super().close()


class FileReceiver:
    """One incoming file: ``write`` chunks, then ``finish`` (verify) or ``abort``."""

    def __init__(self, directory: Path, what: str) -> None:
        self._what = what
        try:
            fd, name = tempfile.mkstemp(prefix="octo-comms-", suffix=PART_SUFFIX, dir=directory)
        except OSError as exc:
            raise TransferError(
                f"cannot spool {what} into {directory}: {exc.strerror}",
                hint="check that the directory exists, is writable and has free space",
            ) from None
        self.path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._aborted = False
        #: the SHA-256 of what arrived, once :meth:`finish` verified it
        self.sha256: str | None = None
        # abort() runs on the event loop while a batch may be in a worker thread
        self._lock = threading.Lock()
        self.received = 0
        self._batch: list[Payload] = []
        self._batched = 0
        self._writing: asyncio.Future[None] | None = None
        self._in_pool = True
        POOL.join()

    async def write(self, chunk: Payload) -> None:
        """Take ``chunk`` (not copied: it must not change until it is written): to the worker
        thread at once if it is free, else with the next batch; waits only while a full
        batch waits for the thread."""
        self._batch.append(chunk)
        self._batched += len(chunk)
        writing = self._writing
        if writing is None or writing.done() or self._batched >= WRITE_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        """Wait for the batch in the worker thread, then hand it the gathered one."""
        await self._settle()
        batch, self._batch, self._batched = self._batch, [], 0
        if batch:
            writing = asyncio.get_running_loop().run_in_executor(None, self._write, batch)
            writing.add_done_callback(lambda done: _written(done, batch))
            self._writing = writing

    async def _settle(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            # shielded: a cancelled caller must not hand the buffers back while the
            # thread still reads them (they return in the done callback)
            await asyncio.shield(writing)

    def _write(self, batch: list[Payload]) -> None:
        with self._lock:
            if self._file is None:  # aborted meanwhile (connection lost): drop the chunks
                return
            for chunk in batch:
                self._file.write(chunk)
                self._hash.update(chunk)
                self.received += len(chunk)

    async def finish(self, end: dict[str, Any]) -> Path:
        """Verify against the DATA_END body; the final path, or TransferError (file deleted)."""
        length, digest = end.get("length"), end.get("sha256")
        if (
            not isinstance(length, int)
            or not isinstance(digest, str)
            or not _SHA256.fullmatch(digest)
        ):
            self.abort()
            raise TransferError(
                f"{self._what}: DATA_END carries no valid length and sha256",
                hint="the peer runs an incompatible or broken version; upgrade it",
            )
        await self._flush()
        await self._settle()
        await asyncio.to_thread(self._close)
        self._leave_pool()
        if self._aborted:
            raise TransferError(f"{self._what} was abandoned before it was complete")
        if length != self.received or digest != self._hash.hexdigest():
            self.abort()
            problem = (
                f"{self.received} bytes arrived but {length} were announced"
                if length != self.received
                else "the SHA-256 of what arrived does not match the sender's"
            )
            raise TransferError(
                f"{self._what} did not arrive intact: {problem}; the partial file was deleted",
                hint="retry; if it keeps failing, something between the two sides alters data",
            )
        final = self.path.with_name(self.path.name[: -len(PART_SUFFIX)])
        os.replace(self.path, final)
        self.path = final
        self.sha256 = digest
        return final

    def abort(self) -> None:
        """Close and delete the partial file (idempotent, safe from any state)."""
        self._aborted = True
        POOL.give(self._batch)
        self._batch, self._batched = [], 0
        self._close()
        self._leave_pool()
        self.path.unlink(missing_ok=True)

    def _close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _leave_pool(self) -> None:
        if self._in_pool:
            self._in_pool = False
            POOL.leave()


def _written(done: asyncio.Future[None], batch: list[Payload]) -> None:
    """A batch is written (or failed): its buffers may be reused; an error is raised to
    whoever waits for it, and not logged as unretrieved when the transfer was abandoned."""
    POOL.give(batch)
    if not done.cancelled():
        done.exception()


def open_for_sending(path: Path, what: str) -> BinaryIO:
    """Open a file to stream, with a clear error when it cannot be read."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise TransferError(
            f"cannot read {what} {path}: {exc.strerror}",
            hint="check that the file exists and this process may read it",
        ) from None


async def open_upload(source: UploadSource, what: str) -> BinaryIO:
    """Open what is to be streamed (an opener runs in a worker thread: it may be slow)."""
    if isinstance(source, KnownContent):
        return _KnownReader(source)  # type: ignore[return-value]
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if isinstance(source, str | os.PathLike):
        return open_for_sending(Path(source), what)
    try:
        stream = await asyncio.to_thread(source)
    except OSError as exc:
        raise TransferError(
            f"cannot open {what}: {exc.strerror or exc}",
            hint="check that the content still exists and this process may read it",
        ) from None
    if isinstance(source, KnownStream):
        return _KnownStreamReader(stream, source.sha256)  # type: ignore[return-value]
    return stream


async def send_file(
    file: BinaryIO,
    chunk_size: int,
    send_chunk: Callable[[bytes | memoryview], Awaitable[None]],
) -> dict[str, Any]:
    """Stream ``file`` through ``send_chunk``; returns the DATA_END body (length, sha256)."""
    if isinstance(file, _KnownReader):
        try:  # in memory with a known digest: uncopied slices straight from the loop
            while view := file.read_view(chunk_size):
                await send_chunk(view)
        finally:
            file.close()
        return dict(file.end)
    known = file.sha256 if isinstance(file, _KnownStreamReader) else None
    digest = None if known else hashlib.sha256()
    length = 0
    try:
        while True:
            chunk = await asyncio.to_thread(_read_and_hash, file, chunk_size, digest)
            if not chunk:
                break
            length += len(chunk)
            await send_chunk(chunk)
    finally:
        file.close()
    return {"length": length, "sha256": known or digest.hexdigest()}  # type: ignore[union-attr]


def _read_and_hash(file: BinaryIO, size: int, digest: Any) -> bytes:
    chunk = file.read(size)
    if digest is not None:
        digest.update(chunk)
    return chunk
