"""Runner builds cached in ``H/runners/``, fetched from the appliance on demand.

A task names the runner it needs by version and SHA-256. If ``octo-runner-<v>.pyz`` is here
with that hash it is used; otherwise the agent calls ``runner.fetch`` on the appliance (over
the connection the task arrived on, which is already pinned), checks the hash of what arrived
and only then renames it into place. So a newer appliance updates the runner of every target
at its next task, and a file that does not match is never run or kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from octo_appliance.agent.cache import check_sha256, sha256_file
from octo_appliance.agent.contract import RUNNER_FETCH
from octo_appliance.comms import CallFailed, CommsError, Connection

log = logging.getLogger("octo_appliance.agent.runners")

_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")

#: returns the connection to ask the appliance on (None: there is none right now)
ConnectionGetter = Callable[[], Connection | None]


def check_version(value: object) -> str:
    if not isinstance(value, str) or not _VERSION.match(value):
        raise CallFailed(
            "bad_request",
            "runner.version must be a version like 0.1.0",
            hint="send the runner version GET /api/v1/runner reports",
        )
    return value


class RunnerCache:
    """The runner builds of one home."""

    def __init__(self, directory: Path, spool: Path) -> None:
        self.directory = directory
        self.spool = spool
        self._locks: dict[str, asyncio.Lock] = {}
        #: path -> (mtime_ns, size, sha256): a cached build is hashed once, not every task
        self._digests: dict[Path, tuple[int, int, str]] = {}
        #: how many times this cache asked the appliance for a build
        self.fetches = 0

    def path_for(self, version: str) -> Path:
        return self.directory / f"octo-runner-{check_version(version)}.pyz"

    def versions(self) -> list[str]:
        prefix, suffix = "octo-runner-", ".pyz"
        try:
            names = sorted(p.name for p in self.directory.glob(f"{prefix}*{suffix}"))
        except OSError:
            return []
        return [name[len(prefix) : -len(suffix)] for name in names]

    async def ensure(self, version: str, sha256: str, connection: ConnectionGetter) -> Path:
        """The path of the runner build ``version`` whose hash is ``sha256``, fetched if needed."""
        path = self.path_for(version)
        sha256 = check_sha256(sha256, "runner.sha256")
        lock = self._locks.setdefault(version, asyncio.Lock())
        async with lock:
            if await self._digest(path) == sha256:
                return path
            await self._fetch(version, sha256, path, connection)
            return path

    async def _digest(self, path: Path) -> str | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        known = self._digests.get(path)
        if known is not None and known[:2] == (stat.st_mtime_ns, stat.st_size):
            return known[2]
        digest = await asyncio.to_thread(sha256_file, path)
        self._digests[path] = (stat.st_mtime_ns, stat.st_size, digest)
        return digest

    async def _fetch(
        self, version: str, sha256: str, path: Path, connection: ConnectionGetter
    ) -> None:
        conn = connection()
        if conn is None or not conn.accepts_calls:
            raise CallFailed(
                "runner_unavailable",
                f"runner {version} is not cached here and there is no connection to fetch it on",
                hint="retry the task",
            )
        self.fetches += 1
        log.info("fetching runner %s from the appliance", version)
        try:
            response = await conn.call(
                RUNNER_FETCH, {"version": version, "sha256": sha256}, download_dir=self.spool
            )
        except CallFailed as exc:
            raise CallFailed(
                "runner_unavailable",
                f"the appliance could not send runner {version}: {exc.message}",
                hint=exc.hint or "check that the appliance carries that runner build",
            ) from None
        except CommsError as exc:
            raise CallFailed(
                "runner_unavailable",
                f"fetching runner {version} from the appliance failed: {exc.message}",
                hint="retry the task",
            ) from None
        downloaded = response.file_path
        if downloaded is None:
            raise CallFailed(
                "runner_unavailable",
                f"the appliance answered runner.fetch for {version} without a file",
                hint="upgrade the appliance",
            )
        try:
            actual = await asyncio.to_thread(sha256_file, downloaded)
            if actual != sha256:
                log.warning(
                    "runner %s from the appliance has SHA-256 %s, expected %s; discarded",
                    version,
                    actual,
                    sha256,
                )
                raise CallFailed(
                    "runner_mismatch",
                    f"the runner {version} the appliance sent has SHA-256 {actual}, but the "
                    f"task asked for {sha256}; it was discarded, nothing ran",
                    hint="the appliance's runner build and the hash it announces disagree: "
                    "rebuild or reinstall the appliance",
                )
            os.chmod(downloaded, 0o644)
            os.replace(downloaded, path)
            log.info("runner %s cached (%s…)", version, sha256[:16])
        finally:
            downloaded.unlink(missing_ok=True)
