"""The package cache: files stored by SHA-256 so a redeploy of the same package moves no bytes.

``cache/<sha256>`` holds the content; ``cache/index.json`` maps each hash to the name it was
uploaded under, its length and, when the sender said, the package id and version it is (for
people, for ``cache.has``, and for ``cache.list``: the appliance picks the base of a delta
from it). A file is only ever moved into place by rename after its hash was checked, so a
name in the cache always means that content; storing the same hash twice is a no-op.

The runner's retention may delete cache files without touching the index, so the index is a
description, never proof: every answer checks the file itself, and entries whose file is gone
are dropped the next time the index is written.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from octo_appliance.agent.contract import package_fields
from octo_appliance.comms import CallFailed
from octo_appliance.durable import write_atomic

log = logging.getLogger("octo_appliance.agent.cache")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 1024 * 1024
INDEX_NAME = "index.json"
T = TypeVar("T")


def check_sha256(value: Any, what: str = "sha256") -> str:
    """A lowercase 64-hex digest, or CallFailed (it also keeps paths out of cache names)."""
    text = value.lower() if isinstance(value, str) else ""
    if not _SHA256.match(text):
        raise CallFailed(
            "bad_request",
            f"{what} must be 64 hex digits (a SHA-256 digest)",
            hint="send the file's SHA-256 as lowercase hex",
        )
    return text


def sha256_file(path: Path) -> str:
    """Hash a file in chunks (call it in a worker thread: it reads the whole file)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class PackageCache:
    """One home's cache directory; an asyncio lock serialises index updates."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.index_file = directory / INDEX_NAME
        self._lock = asyncio.Lock()

    def path_of(self, sha256: str) -> Path:
        return self.directory / check_sha256(sha256)

    def read_index(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.index_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("the cache index %s is unreadable; starting a new one", self.index_file)
            return {}
        return data if isinstance(data, dict) else {}

    def lookup(self, sha256: str) -> int | None:
        """The stored length, or None when the content is not (wholly) in the cache."""
        path = self.path_of(sha256)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        entry = self.read_index().get(path.name)
        if isinstance(entry, dict) and entry.get("length") not in (None, size):
            log.warning("cached package %s has the wrong length; ignoring it", path.name)
            return None
        return size

    def versions_of(self, package_id: str) -> list[dict[str, Any]]:
        """``{sha256, version, length, name}`` of each cached version of a package whose file
        is still whole (blocking: it stats every file; call it in a worker thread)."""
        found = []
        for sha256, entry in sorted(self.read_index().items()):
            if not isinstance(entry, dict) or entry.get("package_id") != package_id:
                continue
            if not _SHA256.match(sha256) or _size(self.directory / sha256) != entry.get("length"):
                continue  # gone (retention), or not whole
            found.append(
                {
                    "sha256": sha256,
                    "version": str(entry.get("version") or ""),
                    "length": entry.get("length"),
                    "name": str(entry.get("name") or ""),
                }
            )
        return found

    async def store(
        self,
        upload: Path,
        sha256: str,
        length: int,
        name: str,
        *,
        package_id: str | None = None,
        version: str | None = None,
        verified_sha256: str | None = None,
    ) -> Path:
        """Move a verified upload into the cache (or drop it when the hash is already there).

        The comms layer verified the upload against what the sender streamed; this checks it
        is the content the sender *named*, since that name is what later tasks ask for. When
        the comms layer already computed that hash as the bytes arrived (``verified_sha256``),
        the file is not read a second time: for fifty targets of a 50 MB package that is
        2.5 GB of hashing saved.
        ``package_id`` and ``version`` are recorded for ``cache.list`` (and added to an entry
        stored earlier without them).
        """
        sha256 = check_sha256(sha256)
        target = self.directory / sha256
        size = upload.stat().st_size
        if size != length:
            raise CallFailed(
                "length_mismatch",
                f"the upload for {sha256[:16]}… has {size} bytes, not the announced {length}",
                hint="upload the file again",
            )
        actual = verified_sha256
        if actual is None:
            actual = await asyncio.to_thread(sha256_file, upload)
        if actual != sha256:
            raise CallFailed(
                "hash_mismatch",
                f"the upload announced as {sha256[:16]}… has SHA-256 {actual[:16]}…; "
                "it was not stored",
                hint="upload the file again; if it keeps failing, check the package in the feed",
            )
        described = package_fields(package_id, version)
        async with self._lock:
            if self.lookup(sha256) == length:
                await self._describe(sha256, length, name, described)
                return target
            os.chmod(upload, 0o600)
            os.replace(upload, target)
            await self._write_index(
                sha256,
                {
                    "name": name[:255],
                    "length": length,
                    **described,
                    "stored_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                },
            )
        log.info("cached package %s… (%d bytes)", sha256[:16], length)
        return target

    async def patch(
        self,
        delta: Path,
        base_sha256: str,
        sha256: str,
        length: int,
        name: str,
        *,
        scratch: Path,
        package_id: str | None = None,
        version: str | None = None,
    ) -> Path:
        """Apply ``delta`` to the cached ``base_sha256`` and store the result as ``sha256``.

        The result is written to ``scratch`` (the comms spool: same file system, emptied at
        start) and stored exactly like an upload, so its length and SHA-256 are checked
        before it gets a name. Errors: ``base_missing`` (not cached, or deleted meanwhile),
        ``delta_failed`` (the delta is corrupt or was made from other content),
        ``length_mismatch`` / ``hash_mismatch`` (it applied but made something else).
        """
        base_sha256, sha256 = check_sha256(base_sha256, "base_sha256"), check_sha256(sha256)
        if self.lookup(sha256) == length:
            async with self._lock:
                await self._describe(sha256, length, name, package_fields(package_id, version))
            return self.directory / sha256
        if self.lookup(base_sha256) is None:
            raise _base_missing(base_sha256)
        # zstd is loaded by the first patch, not by every agent start (start time, idle memory)
        from octo_appliance.feed.delta import DeltaError, apply_delta

        fd, scratch_name = tempfile.mkstemp(prefix="octo-patch-", suffix=".part", dir=scratch)
        os.close(fd)
        out = Path(scratch_name)
        try:
            try:
                await finish_in_thread(
                    apply_delta, self.directory / base_sha256, delta, out, max_length=length
                )
            except FileNotFoundError:
                raise _base_missing(base_sha256) from None
            except DeltaError as exc:
                raise CallFailed(
                    "delta_failed",
                    f"the delta for {sha256[:16]}… did not apply to {base_sha256[:16]}…: {exc}",
                    hint="send the whole package with cache.put instead",
                ) from None
            return await self.store(
                out, sha256, length, name, package_id=package_id, version=version
            )
        finally:
            out.unlink(missing_ok=True)

    async def _describe(
        self, sha256: str, length: int, name: str, described: dict[str, str]
    ) -> None:
        """Add the package id and version to an entry stored without them (lock held)."""
        entry = self.read_index().get(sha256)
        if not isinstance(entry, dict):
            entry = {"name": name[:255], "length": length}
        if described and not entry.get("package_id"):
            await self._write_index(sha256, {**entry, **described})

    async def _write_index(self, sha256: str, entry: dict[str, Any]) -> None:
        """Set one entry and drop those whose file is gone (call with the lock held)."""

        def write() -> None:
            index = {
                key: value
                for key, value in self.read_index().items()
                if _SHA256.match(key) and (self.directory / key).exists()
            }
            index[sha256] = entry
            data = json.dumps(index, indent=1, sort_keys=True).encode("utf-8")
            write_atomic(self.index_file, data, mode=0o600)

        await asyncio.to_thread(write)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _base_missing(base_sha256: str) -> CallFailed:
    return CallFailed(
        "base_missing",
        f"the base {base_sha256[:16]}… of the delta is not in this target's cache",
        hint="send the whole package with cache.put instead",
    )


async def finish_in_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread``, except that a cancelled caller waits for the thread to end
    before it unwinds, so its cleanup does not race a thread still writing the files."""
    future = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
