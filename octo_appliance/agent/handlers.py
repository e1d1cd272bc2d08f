"""The agent's side of the call contract (see :mod:`octo_appliance.agent.contract`).

One :class:`AgentHandlers` per agent identity: it owns that identity's target mutex, runner
cache, package cache and work dirs. Parameters are checked here, so a malformed request is a
``bad_request`` with a hint, never a traceback. Nothing of a request's variables or of the
runner's events is logged: only task ids, counts and exit codes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo_runner import PROTOCOL_VERSION as RUNNER_PROTOCOL

from octo_appliance.agent import contract
from octo_appliance.agent.cache import PackageCache, check_sha256
from octo_appliance.agent.home import AgentConfig, Home
from octo_appliance.agent.runner_host import Emit, RunnerHost, agent_log_event
from octo_appliance.agent.runners import RunnerCache, check_version
from octo_appliance.agent.selfupdate import SelfUpdate
from octo_appliance.agent.version import running_version
from octo_appliance.agent.workdirs import WorkDirs, check_task_id
from octo_appliance.comms import (
    PROTOCOL_VERSION,
    CallFailed,
    Connection,
    IncomingRequest,
    MessageTooLarge,
)

log = logging.getLogger("octo_appliance.agent")

#: seconds between SIGTERM to the runner and SIGKILL of its tree, beyond the script's grace
KILL_MARGIN = 5.0
DEFAULT_SCRIPT_GRACE = 10.0
WAITING_MESSAGE = contract.WAITING_MESSAGE

#: finds the connection a request arrived on (to call the appliance back on it)
ConnectionFinder = Callable[[IncomingRequest], Connection | None]


class AgentHandlers:
    """``await handlers(request)``: the comms handler of one agent identity."""

    def __init__(self, home: Home, config: AgentConfig, connection_of: ConnectionFinder) -> None:
        self.home = home
        self.config = config
        self.connection_of = connection_of
        self.mutex = asyncio.Lock()
        self.runners = RunnerCache(home.runners_dir, home.tmp_dir)
        self.cache = PackageCache(home.cache_dir)
        self.work = WorkDirs(home.work_dir)
        self.host = RunnerHost()
        self.updater = SelfUpdate(home, config, self.is_idle, connection_of)
        self._methods = {
            contract.AGENT_INFO: self.agent_info,
            contract.RUNNER_RUN: self.runner_run,
            contract.CACHE_HAS: self.cache_has,
            contract.CACHE_PUT: self.cache_put,
            contract.CACHE_LIST: self.cache_list,
            contract.CACHE_PATCH: self.cache_patch,
            contract.FILES_FETCH: self.files_fetch,
            contract.AGENT_UPDATE: self.updater.update,
            contract.AGENT_UPDATE_CONFIRM: self.updater.confirm,
        }

    async def __call__(self, request: IncomingRequest) -> Any:
        method = self._methods.get(request.method)
        if method is None:
            raise CallFailed(
                "unknown_method",
                f"this agent ({running_version()}) does not handle {request.method!r}",
                hint="upgrade the agent, or check the method name",
            )
        return await method(request)

    def is_idle(self) -> bool:
        """No runner runs and no task holds or waits for the target mutex."""
        return not self.host.live and not self.mutex.locked()

    # -- agent.info ----------------------------------------------------------------------

    async def agent_info(self, request: IncomingRequest) -> dict[str, Any]:
        return {
            "agent_version": running_version(),
            "protocol": PROTOCOL_VERSION,
            "name": self.config.name,
            "target_id": self.config.target_id,
            "mode": self.config.mode,
            "os": platform.platform(),
            "hostname": socket.gethostname(),
            "runner_versions": self.runners.versions(),
            "work_dir": str(self.home.work_dir),
            "cache_dir": str(self.home.cache_dir),
            "running": len(self.host.live),
            "plugin_bundles": contract.PLUGIN_BUNDLES,
            **self.updater.hello(),
        }

    # -- runner.run ----------------------------------------------------------------------

    async def runner_run(self, request: IncomingRequest) -> dict[str, Any]:
        params = request.params
        task_id = check_task_id(params.get("task_id"))
        runner = params.get("runner")
        if not isinstance(runner, dict):
            raise _bad("runner must be an object {version, sha256}")
        version = check_version(runner.get("version"))
        sha256 = check_sha256(runner.get("sha256"), "runner.sha256")
        command = params.get("command")
        if not isinstance(command, str) or not command:
            raise _bad("command must be a runner command name, e.g. run-script")
        arguments = params.get("arguments", {})
        variables = params.get("variables", [])
        context = params.get("context", {})
        if not isinstance(arguments, dict) or not isinstance(context, dict):
            raise _bad("arguments and context must be objects")
        if not isinstance(variables, list):
            raise _bad("variables must be a list of {name, value, sensitive}")
        exclusive = params.get("exclusive", True)
        if not isinstance(exclusive, bool):
            raise _bad("exclusive must be true or false")
        grace = arguments.get("cancel_grace_seconds", DEFAULT_SCRIPT_GRACE)
        kill_grace = (
            grace if isinstance(grace, int | float) else DEFAULT_SCRIPT_GRACE
        ) + KILL_MARGIN

        emit = _forwarder(request, task_id)
        pyz = await self.runners.ensure(version, sha256, lambda: self.connection_of(request))
        document: dict[str, Any] = {
            "protocol": RUNNER_PROTOCOL,
            "command": command,
            "arguments": arguments,
            "variables": variables,
        }
        plugin = await self._plugin_bundle(request)
        if plugin is not None:
            document["plugin"] = plugin
        if not exclusive:
            return await self._run(pyz, task_id, document, context, emit, kill_grace)
        if self.mutex.locked():
            log.info("task %s: waiting for the target mutex", task_id)
            await emit(agent_log_event(WAITING_MESSAGE))
        async with self.mutex:
            return await self._run(pyz, task_id, document, context, emit, kill_grace)

    async def _plugin_bundle(self, request: IncomingRequest) -> dict[str, str] | None:
        """The runner request's ``plugin`` for ``runner.run``'s optional ``plugin``: the
        bundle fetched (if not cached) and verified by SHA-256, named by its local path."""
        plugin = request.params.get("plugin")
        if plugin is None:
            return None
        if not isinstance(plugin, dict):
            raise _bad("plugin must be an object {name, sha256}")
        name = plugin.get("name", "")
        if not isinstance(name, str) or len(name) > 100:
            raise _bad("plugin.name must be the step type's name")
        sha256 = check_sha256(plugin.get("sha256"), "plugin.sha256")
        path = await self.runners.ensure_bundle(name, sha256, lambda: self.connection_of(request))
        return {"name": name, "sha256": sha256, "path": str(path)}

    async def _run(
        self,
        pyz: Path,
        task_id: str,
        request: dict[str, Any],
        context: dict[str, Any],
        emit: Emit,
        kill_grace: float,
    ) -> dict[str, Any]:
        try:
            work_dir = await asyncio.to_thread(self.work.create, task_id)
        except OSError as exc:
            log.error("task %s: cannot create a work dir: %s", task_id, exc)
            raise CallFailed(
                "work_dir_failed",
                f"the agent cannot create a work dir under {self.home.work_dir}: "
                f"{exc.strerror or exc}",
                hint="free disk space on the target, or check the agent home's permissions",
            ) from None
        document = {
            **request,
            "work_dir": str(work_dir),
            "context": {
                **context,
                "task_id": task_id,
                "cache_dir": str(self.home.cache_dir),
                "applications_dir": str(self.home.applications_dir),
                "journal_file": str(self.home.journal_file),
            },
        }
        return await self.host.run(
            pyz, document, work_dir=work_dir, task_id=task_id, emit=emit, kill_grace=kill_grace
        )

    # -- cache ---------------------------------------------------------------------------

    async def cache_has(self, request: IncomingRequest) -> dict[str, Any]:
        sha256 = check_sha256(request.params.get("sha256"))
        length = self.cache.lookup(sha256)
        return {"present": length is not None, "length": length}

    async def cache_put(self, request: IncomingRequest) -> dict[str, Any]:
        new = _arriving(request, "the file")
        path = await self.cache.store(
            new.upload,
            new.sha256,
            new.length,
            new.name,
            package_id=new.package_id,
            version=new.version,
            verified_sha256=request.upload_sha256,
        )
        return {"stored": True, "path": str(path)}

    async def cache_list(self, request: IncomingRequest) -> dict[str, Any]:
        package_id = request.params.get("package_id")
        if not isinstance(package_id, str) or not package_id:
            raise _bad("package_id must be the id of a package, e.g. MyApp")
        return {"packages": await asyncio.to_thread(self.cache.versions_of, package_id)}

    async def cache_patch(self, request: IncomingRequest) -> dict[str, Any]:
        base_sha256 = check_sha256(request.params.get("base_sha256"), "base_sha256")
        new = _arriving(request, "the delta")
        path = await self.cache.patch(
            new.upload,
            base_sha256,
            new.sha256,
            new.length,
            new.name,
            scratch=self.home.tmp_dir,
            package_id=new.package_id,
            version=new.version,
        )
        return {"stored": True, "path": str(path)}

    # -- files.fetch ---------------------------------------------------------------------

    async def files_fetch(self, request: IncomingRequest) -> dict[str, Any]:
        task_id = check_task_id(request.params.get("task_id"))
        path = await asyncio.to_thread(self.work.resolve_file, task_id, request.params.get("path"))
        request.respond_with_file(path)
        return {"path": str(path), "length": os.path.getsize(path)}


@dataclass(frozen=True)
class _Arriving:
    """The content a ``cache.put`` or ``cache.patch`` brings, as its parameters name it."""

    upload: Path
    sha256: str
    length: int
    name: str
    package_id: str | None
    version: str | None


def _arriving(request: IncomingRequest, what: str) -> _Arriving:
    """The request's upload and its checked parameters (``what``: the upload, for the error
    when there is none)."""
    params = request.params
    sha256 = check_sha256(params.get("sha256"))
    length, name = _length(params), _text(params, "name")
    if request.upload_path is None:
        raise _bad(f"{request.method} needs {what} as an upload")
    package_id, version = _text(params, "package_id") or None, _text(params, "version") or None
    return _Arriving(request.upload_path, sha256, length, name, package_id, version)


def _forwarder(request: IncomingRequest, task_id: str) -> Emit:
    """``emit`` for runner events: one too large for a frame is replaced by a short notice."""

    async def emit(event: dict[str, Any]) -> None:
        try:
            await request.emit(event)
        except MessageTooLarge:
            log.warning("task %s: a runner event was too large to forward; replaced", task_id)
            await request.emit(
                agent_log_event(
                    "an event from the runner was too large to forward and was left out",
                    "warning",
                )
            )

    return emit


def _length(params: dict[str, Any]) -> int:
    length = params.get("length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise _bad("length must be the file's size in bytes")
    return length


def _text(params: dict[str, Any], key: str) -> str:
    """An optional text parameter ("" when absent)."""
    value = params.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{key} must be text")
    return value


def _bad(message: str) -> CallFailed:
    return CallFailed(
        "bad_request", message, hint="see docs/agent.md (the call contract) for the parameters"
    )
