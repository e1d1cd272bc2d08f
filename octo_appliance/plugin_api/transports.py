"""The interface the engine uses to reach a target, whatever carries the bytes.

A transport turns these operations into calls on an agent: run a runner command with its
input and stream its events back, place a package in the agent's cache (whole, or as a delta
against a version it holds), list the versions of a package it holds, fetch a file from a
task's work dir, and check health. The listening and polling transports differ only in how
they carry a call to the agent (:meth:`AgentTransport.send`), so everything else lives here
once, the wait at the agent's update gate included (:meth:`AgentTransport.call`).
Third-party transports (SSH, WinRM, ...) subclass :class:`Transport` and register with
``register_transports``; one that is no agent at all (the built-in worker, SSH) overrides the
operations themselves, and any contract call it does not carry fails as a
:class:`~octo_appliance.comms.CallFailed` ``unknown_method`` with a hint, as an agent that
does not know the method answers. Each is built with a :class:`TransportContext` (what it
may use of the appliance) and may declare settings.

Content to upload is an :data:`~octo_appliance.comms.UploadSource`: a path, bytes, or an
opener returning a fresh stream, so a package decrypted on the fly never has to be written
to disk in the clear to reach a target.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from octo_appliance.agent import contract
from octo_appliance.comms import CallFailed, UploadSource
from octo_appliance.plugin_api.properties import Property
from octo_appliance.plugin_api.target_settings import CheckedTargetSettings, TargetSettings
from octo_appliance.plugin_api.transport_context import TransportContext
from octo_appliance.setting import Setting

if TYPE_CHECKING:
    from octo_appliance.builds.runner import RunnerBuild
    from octo_appliance.comms import Connection, PollingHub, Response

#: Called with each runner event (``{"type": "log", ...}``) as it arrives.
EventSink = Callable[[dict[str, Any]], Awaitable[None] | None]


@dataclass(frozen=True)
class TargetAddress:
    """What a transport needs to know about one target (no database rows)."""

    id: str
    name: str
    communication_style: str
    uri: str = ""
    thumbprint: str = ""
    certificate: str = ""


#: the one address of the appliance's built-in worker (the ``local`` transport): what the
#: engine runs ``run_on: appliance`` steps on, through the transport registered as ``local``
APPLIANCE_WORKER = TargetAddress(id="appliance", name="appliance", communication_style="local")


@dataclass(frozen=True)
class CallOptions:
    """How one contract call is carried, beyond its method and params: one parameter of
    :meth:`Transport.call`, so a new option changes no transport's signature."""

    #: receives each event the call streams (a runner's log lines)
    on_event: EventSink | None = None
    #: content sent with the request (``cache.put``, ``cache.patch``)
    upload: UploadSource | None = None
    #: where a file the answer carries is written (``files.fetch``)
    download_dir: Path | None = None
    #: seconds the call may take; None: the comms default
    timeout: float | None = None

    def limited(self, seconds: float) -> CallOptions:
        """These options with the call's time at most ``seconds``."""
        timeout = seconds if self.timeout is None else min(self.timeout, seconds)
        return dataclasses.replace(self, timeout=timeout)

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of a comms call (``Connection.call``, ``PollingHub.call``)."""
        return {
            "on_event": self.on_event,
            "upload": self.upload,
            "download_dir": self.download_dir,
            "timeout": self.timeout,
        }


NO_OPTIONS = CallOptions()


@dataclass(frozen=True)
class PluginBundle:
    """A step plugin's target-side code as a transport carries it: a zip named by its
    SHA-256 (docs/plugins.md, "Code on the target"). Agents fetch it with ``plugin.fetch``
    and check the hash; a transport that places files itself (the built-in worker) hands
    ``path`` to the runner, which checks the hash again before loading anything."""

    #: the step type it belongs to
    name: str
    sha256: str
    path: Path
    size: int
    commands: frozenset[str]

    def as_param(self) -> dict[str, str]:
        """What ``runner.run`` names it by (its ``plugin`` parameter, docs/agent.md)."""
        return {"name": self.name, "sha256": self.sha256}


@dataclass(frozen=True)
class RunnerCommand:
    """One runner invocation: command, arguments and variables (sensitive ones included)."""

    task_id: str
    command: str
    arguments: dict[str, Any]
    variables: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    exclusive: bool = True
    #: the step plugin's bundle the command comes from (None: a built-in command)
    plugin: PluginBundle | None = None


@dataclass(frozen=True)
class RunnerResult:
    exit_code: int
    success: bool
    canceled: bool
    message: str
    output_variables: list[dict[str, Any]]
    details: dict[str, Any]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunnerResult:
        return cls(
            exit_code=int(raw.get("exit_code", 1)),
            success=bool(raw.get("success", False)),
            canceled=bool(raw.get("canceled", False)),
            message=str(raw.get("message", "")),
            output_variables=list(raw.get("output_variables") or []),
            details=dict(raw.get("details") or {}),
        )


#: a script's default time between SIGTERM and SIGKILL, and what the runner gets beyond it
DEFAULT_SCRIPT_GRACE = 10.0
KILL_MARGIN = 5.0


def runner_request(
    command: RunnerCommand, work_dir: str, paths: dict[str, str]
) -> tuple[dict[str, Any], float]:
    """The runner's stdin document for ``command`` (docs/runner-protocol.md) and how long a
    cancelled runner gets before its tree is killed: for transports that start the runner
    themselves (``paths``: the context's ``cache_dir``, ``applications_dir``,
    ``journal_file``). A plugin bundle is the caller's to add (where the runner finds it)."""
    from octo_runner import PROTOCOL_VERSION

    grace = command.arguments.get("cancel_grace_seconds", DEFAULT_SCRIPT_GRACE)
    kill_grace = (grace if isinstance(grace, int | float) else DEFAULT_SCRIPT_GRACE) + KILL_MARGIN
    document = {
        "protocol": PROTOCOL_VERSION,
        "command": command.command,
        "arguments": command.arguments,
        "variables": command.variables,
        "work_dir": work_dir,
        "context": {**command.context, "task_id": command.task_id, **paths},
    }
    return document, kill_grace


@dataclass(frozen=True)
class AgentCall:
    """One contract call as :meth:`AgentTransport.send` carries it to an agent."""

    method: str
    params: dict[str, Any]
    options: CallOptions = NO_OPTIONS


class AgentLinks(Protocol):
    """What the appliance hands an agent transport (in its context): its ways to reach agents.

    Declared here so the interface does not depend on its implementation
    (``transports/network.py``'s ``AgentNetwork``, which the server starts).
    """

    @property
    def runner(self) -> RunnerBuild:
        """The runner build the appliance serves (what ``runner.run`` asks an agent to use)."""

    @property
    def hub(self) -> PollingHub:
        """The queue of calls waiting for, or sent down, polling agents' connections."""

    @property
    def pickup_timeout(self) -> float:
        """How long a call waits for its polling agent to connect."""

    async def listening_connection(self, target: TargetAddress) -> Connection:
        """An open connection to a listening agent (dialled on first use, then reused)."""

    def gated(
        self, thumbprint: str, on_event: EventSink | None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Around one call to an agent: it waits (bounded) while that agent updates itself,
        telling ``on_event`` why, and counts as work in flight meanwhile."""


class Transport:
    """Base class of transports. Subclasses set ``name``, ``summary`` and :meth:`call`
    (``call(target, method, params, options)``, the options a :class:`CallOptions`)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: False for a transport that can only upload files from a path: package acquisition
    #: then spools the content to a private temporary file for it instead of streaming
    accepts_streams: ClassVar[bool] = True
    #: True for a transport that carries calls to agents: only such a transport's context
    #: holds the agent network (:attr:`TransportContext.agents`)
    agent_transport: ClassVar[bool] = False
    #: the settings it declares (``transport_setting(...)``), read and checked at start and
    #: handed over as ``context.settings`` (docs/plugins.md, "Transport settings")
    settings: ClassVar[tuple[Setting, ...]] = ()
    #: what each of its targets needs (``Property(...)``; ``secret=True`` for credentials):
    #: validated, stored and published by the targets API (docs/plugins.md, "Per-target
    #: settings"); empty: its targets take no ``transport_settings``
    target_settings: ClassVar[tuple[Property, ...]] = ()

    def __init__(self, context: TransportContext) -> None:
        self.context = context

    @classmethod
    def check_target_settings(cls, given: TargetSettings) -> CheckedTargetSettings:
        """What the schema cannot check of a target's settings (called by the API, on its
        thread, with no instance: no I/O here). Raise
        :class:`~octo_appliance.plugin_api.TargetSettingsInvalid` naming the settings;
        return what to store, and the target's ``uri``/``thumbprint`` if it sets them.
        Default: the values as given; given secrets replace the stored ones (none given:
        kept)."""
        return CheckedTargetSettings(given.values, dict(given.secrets) or None)

    @classmethod
    def shown_target_settings(cls, values: dict[str, Any], target: TargetAddress) -> dict[str, Any]:
        """The non-secret settings as the API answers them (a transport may show what it
        learnt since, e.g. a host key recorded on first use). Default: as stored."""
        return values

    @property
    def network(self) -> AgentLinks:
        """The agent network (agent transports only): ``context.agents``."""
        return self.context.agents

    async def start(self) -> None:
        """The appliance is starting, every setting checked: prepare what this transport
        needs (accounts, directories). Raise :class:`~octo_appliance.exceptions.OctoError`
        to stop the start with its message. Default: nothing to prepare."""

    async def close(self) -> None:
        """The appliance is stopping (its tasks were stopped first): end what this transport
        started on its own (processes, pooled connections). Default: nothing to end."""

    async def call(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        options: CallOptions = NO_OPTIONS,
    ) -> Response:
        """Send one contract call to the target's agent (see ``agent/contract.py``), carried
        as ``options`` says (events, an upload, where a download goes, a timeout).

        An agent transport's (:class:`AgentTransport`) waits (bounded) while that agent
        updates itself (the update gate, docs/agent.md, "Self-update") and then hands the
        call to :meth:`send`, so none can skip the gate. Any other transport has no agent to
        call: refused as ``unknown_method`` (what an agent answers to a method it does not
        know), so the step asking fails with a message and a hint, and
        :meth:`cached_versions` sees no versions."""
        if not self.agent_transport:
            raise self._refused(method)
        async with self.network.gated(target.thumbprint, options.on_event):
            return await self.send(target, AgentCall(method, params, options))

    async def send(self, target: TargetAddress, call: AgentCall) -> Response:
        """What an agent transport implements: carry ``call`` to the target's agent, the
        update gate passed. Default: refused, as by a transport with no agent."""
        raise self._refused(call.method)

    def _refused(self, method: str) -> CallFailed:
        return CallFailed(
            "unknown_method",
            f"the {self.name} transport does not carry {method!r}: it has no agent to call",
            hint="run this on an agent target (listening or polling), which handles every "
            "contract call",
        )

    async def run_runner(
        self, target: TargetAddress, command: RunnerCommand, on_event: EventSink | None = None
    ) -> RunnerResult:
        runner = self.context.runner
        params = {
            "task_id": command.task_id,
            "runner": {"version": runner.version, "sha256": runner.sha256},
            "command": command.command,
            "arguments": command.arguments,
            "variables": command.variables,
            "context": command.context,
            "exclusive": command.exclusive,
        }
        if command.plugin is not None:
            params["plugin"] = command.plugin.as_param()
        response = await self.call(
            target, contract.RUNNER_RUN, params, CallOptions(on_event=on_event)
        )
        return RunnerResult.from_json(response.result or {})

    async def has_file(self, target: TargetAddress, sha256: str) -> bool:
        """Whether the target's cache holds this content (whole)."""
        response = await self.call(target, contract.CACHE_HAS, {"sha256": sha256})
        return bool((response.result or {}).get("present"))

    async def upload(
        self,
        target: TargetAddress,
        content: UploadSource,
        sha256: str,
        name: str,
        *,
        length: int | None = None,
        package_id: str | None = None,
        version: str | None = None,
    ) -> None:
        """Place ``content`` in the target's cache under ``sha256`` (the agent checks it).

        ``length`` is required for an opener; for a path or bytes it is taken from them.
        ``package_id`` and ``version`` let :meth:`cached_versions` find it later.
        """
        params: dict[str, Any] = {
            "sha256": sha256,
            "length": await _length_of(content, length),
            "name": name,
        }
        params.update(contract.package_fields(package_id, version))
        await self.call(target, contract.CACHE_PUT, params, CallOptions(upload=content))

    async def cached_versions(self, target: TargetAddress, package_id: str) -> list[dict[str, Any]]:
        """``[{sha256, version, length, name}]`` of the package's versions the target holds.

        An agent too old to know ``cache.list`` holds none, as far as deltas are concerned.
        """
        try:
            response = await self.call(target, contract.CACHE_LIST, {"package_id": package_id})
        except CallFailed as exc:
            if exc.code == "unknown_method":
                return []
            raise
        packages = (response.result or {}).get("packages")
        return [p for p in packages if isinstance(p, dict)] if isinstance(packages, list) else []

    async def upload_delta(
        self,
        target: TargetAddress,
        base_sha256: str,
        delta: UploadSource,
        sha256: str,
        length: int,
        name: str,
        package_id: str | None = None,
        version: str | None = None,
    ) -> None:
        """Send a delta the target applies to its cached ``base_sha256``, giving the content
        ``sha256`` of ``length`` bytes. Raises CallFailed (``base_missing``, ``delta_failed``,
        ``length_mismatch``, ``hash_mismatch``): the caller then sends the whole package."""
        params: dict[str, Any] = {
            "base_sha256": base_sha256,
            "sha256": sha256,
            "length": length,
            "name": name,
        }
        params.update(contract.package_fields(package_id, version))
        await self.call(target, contract.CACHE_PATCH, params, CallOptions(upload=delta))

    async def fetch(
        self, target: TargetAddress, task_id: str, remote_path: str, download_dir: Path
    ) -> Path:
        response = await self.call(
            target,
            contract.FILES_FETCH,
            {"task_id": task_id, "path": remote_path},
            CallOptions(download_dir=download_dir),
        )
        assert response.file_path is not None, "files.fetch answered without a file"
        return response.file_path

    async def info(self, target: TargetAddress, timeout: float | None = 30.0) -> dict[str, Any]:
        response = await self.call(target, contract.AGENT_INFO, {}, CallOptions(timeout=timeout))
        return dict(response.result or {})


class AgentTransport(Transport):
    """Base class of transports that carry contract calls to agents (listening, polling, a
    third party's variant): such a transport implements :meth:`send` only, and its
    :meth:`call` waits (bounded) while the agent updates itself before handing the call
    over (the update gate, docs/agent.md, "Self-update"): none of them can skip the gate."""

    agent_transport: ClassVar[bool] = True


async def _length_of(content: UploadSource, length: int | None) -> int:
    if length is not None:
        return length
    if isinstance(content, bytes):
        return len(content)
    if isinstance(content, str | os.PathLike):
        return (await asyncio.to_thread(os.stat, content)).st_size
    raise ValueError("upload() needs length= when the content is an opener")


__all__ = [
    "APPLIANCE_WORKER",
    "NO_OPTIONS",
    "AgentCall",
    "AgentLinks",
    "AgentTransport",
    "CallOptions",
    "EventSink",
    "PluginBundle",
    "RunnerCommand",
    "RunnerResult",
    "TargetAddress",
    "Transport",
]
