"""The ``ssh`` transport: a target reached over SSH, with no agent, only ``python3`` there.

Every operation goes through the target's one pooled connection
(:mod:`~octo_appliance.transports.ssh.pool`). The first use of a connection prepares the
target's directory and learns which runner builds it holds; the runner build the appliance
serves is uploaded over SFTP into ``runners/<sha256>.pyz`` once and reused by every later
task. Packages go into ``cache/<sha256>`` the same way (no deltas: ``cached_versions`` is
empty, so acquisition sends whole packages or nothing, and never asks for ``upload_delta``).
Runs that are ``exclusive`` wait for each other per target, as on an agent.

There is no agent to send contract calls to, so :meth:`Transport.call` is the base class's:
a refusal (``CallFailed`` ``unknown_method``, with a hint). Every operation the engine uses is
overridden here; ``fetch`` (``files.fetch``) and ``upload_delta`` are not offered and fail
with that refusal.

Targets come from :meth:`SshTransport.start`, which reads them from the database and the
appliance's vault (:mod:`~octo_appliance.transports.ssh.stored`); a test may hand its own
:class:`~octo_appliance.transports.ssh.pool.TargetSource` to :meth:`SshTransport.configure`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from octo_appliance.agent.runner_host import agent_log_event
from octo_appliance.comms import CallFailed, UploadSource
from octo_appliance.plugin_api.target_settings import CheckedTargetSettings, TargetSettings
from octo_appliance.plugin_api.transports import runner_request
from octo_appliance.transports import base
from octo_appliance.transports.base import (
    EventSink,
    PluginBundle,
    RunnerCommand,
    TargetAddress,
    Transport,
)
from octo_appliance.transports.ssh import declared
from octo_appliance.transports.ssh.settings import remote_path

if TYPE_CHECKING:
    from octo_appliance.plugin_api.transport_context import TransportContext

if TYPE_CHECKING:  # asyncssh takes 0.3 s to import: only an appliance with SSH targets pays
    from octo_appliance.transports.ssh.pool import ConnectionPool, Pooled, TargetSource

log = logging.getLogger("octo_appliance.ssh")
WAITING_MESSAGE = "Waiting for another task on this target to finish (the target mutex)"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
T = TypeVar("T")


class SshTransport(Transport):
    name = "ssh"
    summary = "The appliance logs in over SSH and runs the runner with the target's python3"
    target_settings = declared.TARGET_SETTINGS

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        self.pool: ConnectionPool | None = None
        self._mutexes: dict[str, asyncio.Lock] = {}
        self._cleanups: set[asyncio.Task[Any]] = set()

    @classmethod
    def check_target_settings(cls, given: TargetSettings) -> CheckedTargetSettings:
        return declared.check(given)

    @classmethod
    def shown_target_settings(cls, values: dict[str, Any], target: TargetAddress) -> dict[str, Any]:
        return declared.shown(values, target)

    async def start(self) -> None:
        """Read targets and their credentials from the database and the appliance's vault
        (:mod:`~octo_appliance.transports.ssh.stored`)."""
        from octo_appliance.transports.ssh.stored import StoredSshTargets

        if self.context.sealing is not None and self.pool is None:
            self.configure(StoredSshTargets(self.context.sealing))

    def configure(self, source: TargetSource) -> None:
        """Where targets and their credentials are read (at start, or a test's own source)."""
        from octo_appliance.transports.ssh.pool import ConnectionPool

        self.pool = ConnectionPool(source)

    async def close(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()

    # -- the interface -------------------------------------------------------------------

    async def info(self, target: TargetAddress, timeout: float | None = 30.0) -> dict[str, Any]:
        """Connect, prepare the directory and say what is there (a health check's first
        step; no python3 fails the check there, naming it)."""
        try:
            async with asyncio.timeout(timeout):
                pooled = await self._ready(target)
        except TimeoutError:
            raise CallFailed(
                "ssh_timeout",
                f"{target.name} did not answer over SSH within {timeout} s",
                hint="check the network path to the target and the load of its sshd",
            ) from None
        facts = pooled.facts
        return {
            "agent_version": f"ssh (python {facts['python']})",
            "transport": self.name,
            "python": facts["python"],
            "directory": facts["directory"],
            "work_dir": remote_path(facts["directory"], "work"),
            "cache_dir": remote_path(facts["directory"], "cache"),
        }

    async def run_runner(
        self, target: TargetAddress, command: RunnerCommand, on_event: EventSink | None = None
    ) -> base.RunnerResult:
        async def emit(event: dict[str, Any]) -> None:
            if on_event is not None:
                outcome = on_event(event)
                if inspect.isawaitable(outcome):
                    await outcome

        pooled = await self._ready(target)
        pyz = await self._runner(target, pooled)
        bundle = None
        if command.plugin is not None:
            bundle = await self._bundle(target, pooled, command.plugin)
        if not command.exclusive:
            return await self._run(pooled, pyz, command, emit, bundle)
        mutex = self._mutexes.setdefault(target.id, asyncio.Lock())
        if mutex.locked():
            await emit(agent_log_event(WAITING_MESSAGE))
        async with mutex:
            return await self._run(pooled, pyz, command, emit, bundle)

    async def has_file(self, target: TargetAddress, sha256: str) -> bool:
        from octo_appliance.transports.ssh import remote

        async def look(pooled: Pooled) -> bool:
            path = self._path(pooled, "cache", _hash(sha256))
            return await remote.is_file(await pooled.sftp(), path)

        return await self._using(target, look)

    async def cached_versions(self, target: TargetAddress, package_id: str) -> list[dict[str, Any]]:
        """None, as far as deltas go: an SSH target always gets whole packages."""
        return []

    async def upload(
        self, target: TargetAddress, content: UploadSource, sha256: str, name: str, **kw: Any
    ) -> None:
        """Into ``cache/<sha256>``, checked by ``length=`` when given (the package id and
        version are not kept: there are no deltas)."""
        from octo_appliance.transports.ssh import remote

        async def put(pooled: Pooled) -> None:
            final = self._path(pooled, "cache", _hash(sha256))
            length = kw.get("length")
            sent = await remote.put_file(await pooled.sftp(), content, final, sha256, length)
            log.info("%s: %s (%d bytes) into the cache", target.name, name, sent)

        await self._using(target, put)

    # -- internals -----------------------------------------------------------------------

    async def _using(self, target: TargetAddress, work: Callable[[Pooled], Awaitable[T]]) -> T:
        from octo_appliance.transports.ssh import remote

        if self.pool is None:
            raise RuntimeError("the ssh transport was not configured")
        if target.communication_style != self.name:
            raise CallFailed("unknown_target", f"{target.name} is not an SSH target")

        async def prepared(pooled: Pooled) -> T:
            if "directory" not in pooled.facts:
                pooled.facts.update(
                    await remote.prepare(pooled.conn, pooled.target.directory, pooled.target.label)
                )
            return await work(pooled)

        return await self.pool.using(target.id, prepared)

    async def _ready(self, target: TargetAddress) -> Pooled:
        async def same(pooled: Pooled) -> Pooled:
            return pooled

        return await self._using(target, same)

    async def _runner(self, target: TargetAddress, pooled: Pooled) -> str:
        """The runner build on the target (uploaded once per build, keyed by SHA-256)."""
        from octo_appliance.transports.ssh import remote

        build = self.context.runner
        file_name = f"{build.sha256}.pyz"
        path = self._path(pooled, "runners", file_name)
        lock = pooled.facts.setdefault("runner_lock", asyncio.Lock())
        async with lock:
            if file_name not in pooled.facts.get("runners", []):
                await remote.put_file(await pooled.sftp(), build.path, path, build.sha256, None)
                pooled.facts.setdefault("runners", []).append(file_name)
                log.info("%s: runner %s uploaded", target.name, build.version)
        return path

    async def _bundle(self, target: TargetAddress, pooled: Pooled, bundle: PluginBundle) -> str:
        """The plugin's command bundle on the target: ``plugins/<sha256>.zip``, uploaded over
        SFTP once (checked against its SHA-256 before it is renamed into place) and reused by
        every later task and connection; the runner checks the hash again before loading."""
        from octo_appliance.transports.ssh import remote

        file_name = f"{_hash(bundle.sha256)}.zip"
        path = self._path(pooled, "plugins", file_name)
        present: set[str] = pooled.facts.setdefault("plugins", set())
        lock = pooled.facts.setdefault("plugin_lock", asyncio.Lock())
        async with lock:
            if file_name in present:
                return path
            sftp = await pooled.sftp()
            if not await remote.is_file(sftp, path):
                await remote.put_file(sftp, bundle.path, path, bundle.sha256, bundle.size)
                log.info("%s: plugin bundle of %s uploaded", target.name, bundle.name)
            present.add(file_name)
        return path

    async def _run(
        self,
        pooled: Pooled,
        pyz: str,
        command: RunnerCommand,
        emit: Callable[[dict[str, Any]], Awaitable[None]],
        bundle: str | None = None,
    ) -> base.RunnerResult:
        """One runner process; ``bundle``: the path of the command's plugin bundle there."""
        from octo_appliance.transports.ssh import remote

        directory = pooled.facts["directory"]
        work_dir = self._path(
            pooled, "work", f"{_UNSAFE.sub('_', command.task_id)[:80]}-{secrets.token_hex(4)}"
        )
        paths = {
            "cache_dir": remote_path(directory, "cache"),
            "applications_dir": remote_path(directory, "applications"),
            "journal_file": remote_path(directory, "state", "journal.json"),
        }
        document, kill_grace = runner_request(command, work_dir, paths)
        if command.plugin is not None and bundle is not None:
            document["plugin"] = {**command.plugin.as_param(), "path": bundle}
        try:
            raw = await remote.run_runner(
                pooled.conn,
                pyz,
                document,
                emit=emit,
                kill_grace=kill_grace,
                label=pooled.target.label,
            )
        finally:
            # removed in the background: the result does not wait for it
            task = asyncio.get_running_loop().create_task(remote.remove_tree(pooled, work_dir))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)
        return base.RunnerResult.from_json(raw)

    @staticmethod
    def _path(pooled: Pooled, *parts: str) -> str:
        return remote_path(pooled.facts["directory"], *parts)


def _hash(sha256: str) -> str:
    value = sha256.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise CallFailed("bad_request", "sha256 must be 64 hex digits")
    return value
