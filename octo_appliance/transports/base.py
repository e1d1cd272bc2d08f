"""The interface the engine uses to reach a target, whatever carries the bytes.

A transport turns four operations into calls on an agent: run a runner command with its
input and stream its events back, place a file in the agent's package cache, fetch a file
from a task's work dir, and check health. The listening and polling transports differ only
in how they get a connection (:meth:`Transport.call`), so everything else lives here once.
Third-party transports (SSH, WinRM, ...) subclass this and register with
``register_transports``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from octo_appliance.agent import contract

if TYPE_CHECKING:
    from octo_appliance.comms import Response
    from octo_appliance.transports.network import AgentNetwork

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


@dataclass(frozen=True)
class RunnerCommand:
    """One runner invocation: command, arguments and variables (sensitive ones included)."""

    task_id: str
    command: str
    arguments: dict[str, Any]
    variables: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    exclusive: bool = True


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


class Transport:
    """Base class of transports. Subclasses set ``name``, ``summary`` and :meth:`call`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, network: AgentNetwork) -> None:
        self.network = network

    async def call(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        *,
        on_event: EventSink | None = None,
        upload: Path | None = None,
        download_dir: Path | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one contract call to the target's agent (see ``agent/contract.py``)."""
        raise NotImplementedError(f"transport {self.name!r} does not implement call()")

    async def run_runner(
        self, target: TargetAddress, command: RunnerCommand, on_event: EventSink | None = None
    ) -> RunnerResult:
        runner = self.network.runner
        params = {
            "task_id": command.task_id,
            "runner": {"version": runner.version, "sha256": runner.sha256},
            "command": command.command,
            "arguments": command.arguments,
            "variables": command.variables,
            "context": command.context,
            "exclusive": command.exclusive,
        }
        response = await self.call(target, contract.RUNNER_RUN, params, on_event=on_event)
        return RunnerResult.from_json(response.result or {})

    async def has_file(self, target: TargetAddress, sha256: str) -> bool:
        response = await self.call(target, contract.CACHE_HAS, {"sha256": sha256})
        return bool((response.result or {}).get("present"))

    async def upload(self, target: TargetAddress, path: Path, sha256: str, name: str) -> None:
        params = {"sha256": sha256, "length": path.stat().st_size, "name": name}
        await self.call(target, contract.CACHE_PUT, params, upload=path)

    async def fetch(
        self, target: TargetAddress, task_id: str, remote_path: str, download_dir: Path
    ) -> Path:
        response = await self.call(
            target,
            contract.FILES_FETCH,
            {"task_id": task_id, "path": remote_path},
            download_dir=download_dir,
        )
        assert response.file_path is not None, "files.fetch answered without a file"
        return response.file_path

    async def info(self, target: TargetAddress, timeout: float | None = 30.0) -> dict[str, Any]:
        response = await self.call(target, contract.AGENT_INFO, {}, timeout=timeout)
        return dict(response.result or {})
