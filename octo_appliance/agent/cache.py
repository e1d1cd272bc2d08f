"""The package cache: files stored by SHA-256 so a redeploy of the same package moves no bytes.

``cache/<sha256>`` holds the content; ``cache/index.json`` maps each hash to the name it was
uploaded under and its length (for people and for ``cache.has``). A file is only ever moved
into place by rename after its hash was checked, so a name in the cache always means that
content; storing the same hash twice is a no-op.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from octo_appliance.comms import CallFailed
from octo_appliance.durable import write_atomic

log = logging.getLogger("octo_appliance.agent.cache")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 1024 * 1024
INDEX_NAME = "index.json"


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

    async def store(self, upload: Path, sha256: str, length: int, name: str) -> Path:
        """Move a verified upload into the cache (or drop it when the hash is already there).

        The comms layer verified the upload against what the sender streamed; this checks it
        is the content the sender *named*, since that name is what later tasks ask for.
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
        actual = await asyncio.to_thread(sha256_file, upload)
        if actual != sha256:
            raise CallFailed(
                "hash_mismatch",
                f"the upload announced as {sha256[:16]}… has SHA-256 {actual[:16]}…; "
                "it was not stored",
                hint="upload the file again; if it keeps failing, check the package in the feed",
            )
        async with self._lock:
            if self.lookup(sha256) == length:
                return target
            os.chmod(upload, 0o600)
            os.replace(upload, target)
            index = self.read_index()
            index[sha256] = {
                "name": name[:255],
                "length": length,
                "stored_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
            data = json.dumps(index, indent=1, sort_keys=True).encode("utf-8")
            await asyncio.to_thread(write_atomic, self.index_file, data, mode=0o600)
        log.info("cached package %s… (%d bytes)", sha256[:16], length)
        return target
