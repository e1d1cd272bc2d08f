"""Runner builds and plugin command bundles cached in ``H/runners/``, fetched from the
appliance on demand.

A task names the runner it needs by version and SHA-256. If ``octo-runner-<v>.pyz`` is here
with that hash it is used; otherwise the agent calls ``runner.fetch`` on the appliance (over
the connection the task arrived on, which is already pinned), checks the hash of what arrived
and only then renames it into place. So a newer appliance updates the runner of every target
at its next task, and a file that does not match is never run or kept.

A task whose command a step plugin ships names that plugin's bundle by SHA-256 too
(``plugin``): ``plugin-<sha256>.zip`` here, fetched with ``plugin.fetch`` and checked exactly
the same way; a bundle's name is its hash, so a cached one never needs fetching again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from octo_appliance.agent.cache import check_sha256, sha256_file
from octo_appliance.agent.contract import PLUGIN_FETCH, RUNNER_FETCH
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
            params = {"version": version, "sha256": sha256}
            await self._fetch(RUNNER_FETCH, params, f"runner {version}", path, connection)
            return path

    def bundle_path(self, sha256: str) -> Path:
        return self.directory / f"plugin-{check_sha256(sha256, 'plugin.sha256')}.zip"

    async def ensure_bundle(self, name: str, sha256: str, connection: ConnectionGetter) -> Path:
        """The path of the plugin command bundle ``sha256`` (of step type ``name``, for
        messages), fetched from the appliance if it is not cached here."""
        path = self.bundle_path(sha256)
        what = f"plugin bundle {name or sha256[:16]}"
        lock = self._locks.setdefault(path.name, asyncio.Lock())
        async with lock:
            if await self._digest(path) == sha256:
                return path
            params = {"sha256": sha256, "name": name}
            await self._fetch(PLUGIN_FETCH, params, what, path, connection)
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
        self,
        method: str,
        params: dict[str, str],
        what: str,
        path: Path,
        connection: ConnectionGetter,
    ) -> None:
        """Ask the appliance for ``what`` and keep it at ``path`` only if its SHA-256 is
        ``params["sha256"]``."""
        sha256 = params["sha256"]
        conn = connection()
        if conn is None or not conn.accepts_calls:
            raise CallFailed(
                "runner_unavailable",
                f"{what} is not cached here and there is no connection to fetch it on",
                hint="retry the task",
            )
        self.fetches += 1
        log.info("fetching %s from the appliance", what)
        try:
            response = await conn.call(method, params, download_dir=self.spool)
        except CallFailed as exc:
            raise CallFailed(
                "runner_unavailable",
                f"the appliance could not send {what}: {exc.message}",
                hint=exc.hint or "check that the appliance carries that build",
            ) from None
        except CommsError as exc:
            raise CallFailed(
                "runner_unavailable",
                f"fetching {what} from the appliance failed: {exc.message}",
                hint="retry the task",
            ) from None
        downloaded = response.file_path
        if downloaded is None:
            raise CallFailed(
                "runner_unavailable",
                f"the appliance answered {method} for {what} without a file",
                hint="upgrade the appliance",
            )
        try:
            actual = await asyncio.to_thread(sha256_file, downloaded)
            if actual != sha256:
                log.warning(
                    "%s from the appliance has SHA-256 %s, expected %s; discarded",
                    what,
                    actual,
                    sha256,
                )
                raise CallFailed(
                    "runner_mismatch",
                    f"the {what} the appliance sent has SHA-256 {actual}, but the "
                    f"task asked for {sha256}; it was discarded, nothing ran",
                    hint="the appliance's build and the hash it announces disagree: "
                    "rebuild or reinstall the appliance",
                )
            os.chmod(downloaded, 0o644)
            os.replace(downloaded, path)
            log.info("%s cached (%s…)", what, sha256[:16])
        finally:
            downloaded.unlink(missing_ok=True)
