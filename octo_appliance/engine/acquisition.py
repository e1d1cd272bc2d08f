"""Package acquisition: put one package version into the cache of many targets at once.

Before a step deploys a package, every target must hold it in its package cache (by SHA-256).
Per target, the cheapest way that works:

1. **cached**: the target already holds that content (``has_file``): nothing is sent, so a
   redeploy moves no bytes;
2. **delta**: the target holds another version the feed still has (``cached_versions``,
   matched by SHA-256; the newest older one is the base, else, for a rollback, the oldest
   newer one): a zstd delta from it
   (:mod:`octo_appliance.feed.delta`) is sent if it is under 80% of the package. A delta is
   computed once per base and version per acquisition, in a worker thread, and shared by every
   target with that base. If the target refuses it (``base_missing``, ``delta_failed``,
   ``hash_mismatch``, ...), the full package follows;
3. **full**: the package, decrypted once per acquisition into memory (up to
   :data:`SHARED_MAX_BYTES` and the delta limit) and sent to every target from there, its
   SHA-256 known (:class:`~octo_appliance.comms.KnownContent`: no hashing per target); a
   larger package is streamed from the feed's plaintext reader straight into each connection
   (an :data:`~octo_appliance.comms.UploadSource` opener; :class:`~octo_appliance.comms.
   KnownStream`: its SHA-256 known too, not hashed per target). Decrypted content is never
   written to the appliance's disk; only a transport that declares ``accepts_streams =
   False`` gets a spool file for a large package (``spool_dir``, 0600, deleted right after).

Targets are served concurrently, at most ``parallelism`` at a time. Each ends with one
:class:`Transfer` and one log line saying what was sent and how many bytes; one that fails is
``failed`` with the reason and never stops the others. Cancelling :meth:`Acquirer.acquire`
cancels every transfer in flight.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

from octo_appliance.comms import KnownContent, KnownStream, UploadSource
from octo_appliance.feed.delta import make_delta
from octo_appliance.transports.base import TargetAddress, Transport

logger = logging.getLogger("octo_appliance.engine.acquisition")

#: a delta is only sent when it is smaller than this share of the package
DELTA_WORTH = 0.8
#: a package up to this size (and the delta limit) is decrypted once per acquisition and sent
#: to every target from memory; a larger one is streamed from the vault per target
SHARED_MAX_BYTES = 256 * 1024 * 1024
Mode = Literal["cached", "full", "delta", "failed"]
#: ``log(level, message, target)``: a task log line tagged with the target
LogSink = Callable[[str, str, TargetAddress | None], None]


class PackageRecordLike(Protocol):
    """One version of a package in the feed (what the acquirer needs of it)."""

    @property
    def package_id(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def file_name(self) -> str: ...


class PackageSource(Protocol):
    """Where packages come from (the feed). Synchronous: the acquirer calls these in worker
    threads. ``record`` is always one this source returned from :meth:`versions` (or the
    caller got from the same source), so a source may type it as its own record class."""

    def versions(self, package_id: str) -> Sequence[PackageRecordLike]:
        """Every stored version of the package, ascending by semantic version."""
        ...

    def open_plaintext(self, record: Any) -> BinaryIO:
        """A fresh stream of the package's content (decrypted as it is read)."""
        ...

    def read_plaintext(self, record: Any) -> bytes:
        """The whole content in memory (for deltas, which need both versions whole)."""
        ...


@dataclass(frozen=True)
class Transfer:
    """How one target got the package."""

    target_id: str
    target_name: str
    mode: Mode
    bytes_sent: int
    base_version: str | None
    message: str


class Acquirer:
    """Places package versions on targets; one per appliance (it keeps no state between
    acquisitions)."""

    def __init__(
        self,
        transports: Callable[[TargetAddress], Transport | None],
        source: PackageSource,
        *,
        parallelism: int,
        delta_max_bytes: int,
        spool_dir: Path,
    ) -> None:
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        self.transports = transports
        self.source = source
        self.parallelism = parallelism
        self.delta_max_bytes = delta_max_bytes
        self.spool_dir = spool_dir

    async def acquire(
        self,
        record: PackageRecordLike,
        targets: Sequence[TargetAddress],
        log: LogSink,
        on_placed: Callable[[Transfer], None] | None = None,
    ) -> dict[str, Transfer]:
        """Make every target hold ``record``; each target's :class:`Transfer` by target id.
        ``on_placed`` hears of each target's transfer as soon as it ends (so that target can
        go on while others still receive)."""
        try:
            versions = await asyncio.to_thread(self.source.versions, record.package_id)
        except Exception as exc:  # without the list there is no delta, nothing worse
            logger.warning("cannot list the versions of %s: %s", record.package_id, exc)
            versions = []
        run = _Acquisition(self, record, _bases(versions, record), log)
        gate = asyncio.Semaphore(self.parallelism)

        async def one(target: TargetAddress) -> Transfer:
            async with gate:
                transfer = await run.place(target)
            if on_placed is not None:
                on_placed(transfer)
            return transfer

        transfers = await asyncio.gather(*(one(target) for target in targets))
        return {transfer.target_id: transfer for transfer in transfers}


def _bases(
    versions: Sequence[PackageRecordLike], record: PackageRecordLike
) -> list[PackageRecordLike]:
    """The other versions, best delta base first: the older ones newest first (an upgrade's
    usual case), then the newer ones oldest first (a rollback); none when the feed does not
    list ``record`` (the list is ascending: then nothing is known of its neighbours)."""
    for index, candidate in enumerate(versions):
        if candidate.version == record.version:
            older = list(reversed(versions[:index]))
            newer = list(versions[index + 1 :])
            return [v for v in older + newer if v.sha256 != record.sha256]
    return []


@dataclass
class _Delta:
    """A computed delta, or why there is none."""

    data: bytes | None
    reason: str


class _Acquisition:
    """The state of one :meth:`Acquirer.acquire`: the deltas made so far, shared by targets."""

    def __init__(
        self,
        owner: Acquirer,
        record: PackageRecordLike,
        bases: list[PackageRecordLike],
        log: LogSink,
    ) -> None:
        self.owner = owner
        self.record = record
        #: candidate delta bases, best first (:func:`_bases`)
        self.bases = bases
        self.log = log
        self.label = f"{record.package_id} {record.version}"
        self.deltas: dict[str, _Delta] = {}
        self.delta_lock = asyncio.Lock()
        self.whole_lock = asyncio.Lock()
        self.whole: KnownContent | None = None

    async def place(self, target: TargetAddress) -> Transfer:
        """One target, start to end; never raises but for cancellation."""
        record = self.record
        transport = self.owner.transports(target)
        if transport is None:
            return self._failed(
                target,
                f"no transport '{target.communication_style}' is loaded for this target; "
                "check GET /api/v1/plugins",
            )
        try:
            if await transport.has_file(target, record.sha256):
                return self._done(
                    target, "cached", 0, None, "already in the target's cache, 0 bytes sent"
                )
            note, refused_bytes = "", 0
            base = await self._base_on(transport, target)
            if base is not None:
                delta = await self._delta_from(base)
                if delta.data is not None:
                    try:
                        await transport.upload_delta(
                            target,
                            base.sha256,
                            delta.data,
                            record.sha256,
                            record.size,
                            record.file_name,
                            record.package_id,
                            record.version,
                        )
                    except Exception as exc:  # any refusal means: send it whole
                        refused_bytes = len(delta.data)
                        note = f"the delta from {base.version} was refused ({_reason(exc)}); "
                    else:
                        share = 100 * len(delta.data) / max(1, record.size)
                        return self._done(
                            target,
                            "delta",
                            len(delta.data),
                            base.version,
                            f"sent a delta from {base.version}, {format_size(len(delta.data))} "
                            f"({share:.1f}% of {format_size(record.size)})",
                        )
                else:
                    note = f"no delta from {base.version} ({delta.reason}); "
            await self._send_whole(transport, target)
            sent = f"sent the full package, {format_size(record.size)}"
            return self._done(
                target,
                "full",
                record.size + refused_bytes,
                None,
                note + sent,
                level="warning" if refused_bytes else "info",
            )
        except Exception as exc:  # one target's failure must not stop the rest
            return self._failed(target, str(exc))

    # -- choosing and making the delta ----------------------------------------------------

    async def _base_on(
        self, transport: Transport, target: TargetAddress
    ) -> PackageRecordLike | None:
        """The best base (:func:`_bases`) the target holds and the feed still has (by
        SHA-256)."""
        if not self.bases:
            return None
        try:
            held = await transport.cached_versions(target, self.record.package_id)
        except Exception as exc:  # no list only means no delta
            logger.info("%s: cannot list cached versions on %s: %s", self.label, target.name, exc)
            return None
        hashes = {str(entry.get("sha256", "")).lower() for entry in held}
        for candidate in self.bases:
            if candidate.sha256 in hashes:
                return candidate
        return None

    async def _delta_from(self, base: PackageRecordLike) -> _Delta:
        """The delta base -> record, made once (under the lock, in a thread) and shared."""
        async with self.delta_lock:
            known = self.deltas.get(base.sha256)
            if known is not None:
                return known
            limit = self.owner.delta_max_bytes
            if max(self.record.size, base.size) > limit:
                made = _Delta(None, f"larger than the delta limit of {format_size(limit)}")
            else:
                try:
                    data = await asyncio.to_thread(self._make, base)
                except Exception as exc:  # a delta is an optimisation
                    logger.warning(
                        "%s: making a delta from %s failed: %s", self.label, base.version, exc
                    )
                    made = _Delta(None, f"making it failed: {_reason(exc)}")
                else:
                    if len(data) < DELTA_WORTH * self.record.size:
                        made = _Delta(data, "")
                    else:
                        share = 100 * len(data) / max(1, self.record.size)
                        made = _Delta(None, f"it would be {share:.0f}% of the package")
            self.deltas[base.sha256] = made
            return made

    def _make(self, base: PackageRecordLike) -> bytes:
        """Blocking: both versions in memory, then the delta."""
        old = self.owner.source.read_plaintext(base)
        new = self.owner.source.read_plaintext(self.record)
        return make_delta(old, new)

    # -- the whole package ----------------------------------------------------------------

    async def _shared_whole(self) -> KnownContent | None:
        """The package in memory, read once and shared by every target of this acquisition
        (decrypting it once instead of once per target); None when it is too large."""
        if self.record.size > min(SHARED_MAX_BYTES, self.owner.delta_max_bytes):
            return None
        async with self.whole_lock:
            if self.whole is None:
                data = await asyncio.to_thread(self.owner.source.read_plaintext, self.record)
                self.whole = KnownContent(data, self.record.sha256)
            return self.whole

    async def _send_whole(self, transport: Transport, target: TargetAddress) -> None:
        opener = KnownStream(
            functools.partial(self.owner.source.open_plaintext, self.record), self.record.sha256
        )
        if transport.accepts_streams:
            shared = await self._shared_whole()
            if shared is not None:
                await self._upload(transport, target, shared)
                return
            await self._upload(transport, target, opener)
            return
        spooling = asyncio.ensure_future(asyncio.to_thread(_spool, opener, self.owner.spool_dir))
        try:
            spooled = await asyncio.shield(spooling)
        except asyncio.CancelledError:
            spooling.add_done_callback(_remove_spooled)  # the thread still finishes the file
            raise
        try:
            await self._upload(transport, target, spooled)
        finally:
            await asyncio.shield(asyncio.to_thread(spooled.unlink, True))

    async def _upload(
        self, transport: Transport, target: TargetAddress, content: UploadSource
    ) -> None:
        """The whole package from ``content`` (a stream opener or a spooled file)."""
        record = self.record
        await transport.upload(
            target,
            content,
            record.sha256,
            record.file_name,
            length=record.size,
            package_id=record.package_id,
            version=record.version,
        )

    # -- outcomes -------------------------------------------------------------------------

    def _done(
        self,
        target: TargetAddress,
        mode: Mode,
        sent: int,
        base_version: str | None,
        what: str,
        *,
        level: str = "info",
    ) -> Transfer:
        message = f"{self.label}: {what}"
        self.log(level, message, target)
        return Transfer(target.id, target.name, mode, sent, base_version, message)

    def _failed(self, target: TargetAddress, why: str) -> Transfer:
        message = f"{self.label}: could not be placed in the target's cache: {why}"
        self.log("error", message, target)
        return Transfer(target.id, target.name, "failed", 0, None, message)


def _reason(exc: BaseException) -> str:
    """The short form of an error (no hint) for a log line that goes on anyway."""
    return str(getattr(exc, "message", None) or exc)


def _spool(opener: Callable[[], BinaryIO], directory: Path) -> Path:
    """The content in a private (0600) file for a transport that can only send files."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="octo-package-", suffix=".part", dir=directory)
    path = Path(name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out, opener() as source:
            shutil.copyfileobj(source, out, 1024 * 1024)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _remove_spooled(done: asyncio.Future[Path]) -> None:
    if not done.cancelled() and done.exception() is None:
        done.result().unlink(missing_ok=True)


def format_size(size: int) -> str:
    """``512 bytes``, ``512.3 KB``, ``45.0 MB``, ``1.2 GB`` (binary multiples)."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


__all__ = [
    "Acquirer",
    "LogSink",
    "PackageRecordLike",
    "PackageSource",
    "Transfer",
    "format_size",
]
