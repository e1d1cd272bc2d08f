"""Run one runner command on many targets at once and record each target's outcome.

The fan-out every target-facing task uses (script console, health checks, deployment
steps): every target runs concurrently (bounded by ``parallelism``: a rolling window), each
through its transport, with its own command (so its own variables); its runner events become
task log lines tagged with the target; a target that fails, cannot be reached or disconnects
fails on its own while the others complete.

Where the outcome of each target goes is a :class:`TargetRecorder`: by default the task's
per-target results (:class:`TaskResults`); a deployment records per step and target instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from octo_appliance.comms import CommsError
from octo_appliance.engine.tasks import OutputVariable, RunningTask, TargetRef
from octo_appliance.engine.tasks.output import TargetOutput
from octo_appliance.transports.base import RunnerCommand, RunnerResult, TargetAddress, Transport

log = logging.getLogger("octo_appliance.engine")

_LEVELS = {"verbose": "verbose", "info": "info", "highlight": "highlight", "wait": "info"}


@dataclass(frozen=True)
class TargetOutcome:
    target: TargetAddress
    result: RunnerResult | None
    error: str | None

    @property
    def success(self) -> bool:
        return self.result is not None and self.result.success


class TargetRecorder(Protocol):
    """Where a dispatcher reports each target's progress (any of these may write)."""

    async def pending(self, target: TargetAddress) -> None: ...

    async def executing(self, target: TargetAddress) -> None: ...

    async def finished(
        self,
        target: TargetAddress,
        state: str,
        *,
        exit_code: int | None = None,
        output_variables: Sequence[OutputVariable] = (),
        message: str = "",
    ) -> None:
        """``state``: success, failed or canceled (the target result states)."""


class TaskResults:
    """The default recorder: one task target result per target, as the console shows."""

    def __init__(self, task: RunningTask) -> None:
        self.task = task

    async def pending(self, target: TargetAddress) -> None:
        await self.task.set_target_result(target.id, target.name, "pending")

    async def executing(self, target: TargetAddress) -> None:
        await self.task.set_target_result(target.id, target.name, "executing")

    async def finished(
        self,
        target: TargetAddress,
        state: str,
        *,
        exit_code: int | None = None,
        output_variables: Sequence[OutputVariable] = (),
        message: str = "",
    ) -> None:
        await self.task.set_target_result(
            target.id,
            target.name,
            state,
            exit_code=exit_code,
            output_variables=list(output_variables),
            message=message or None,
        )


class Dispatcher:
    """Transports by name, built once per appliance from the plugin registry."""

    def __init__(self, transports: Mapping[str, Transport]) -> None:
        self.transports = dict(transports)

    def transport_for(self, target: TargetAddress) -> Transport | None:
        return self.transports.get(target.communication_style)

    async def close(self) -> None:
        """Close every transport (the appliance stops); one that fails does not keep the
        others open."""
        transports = list(self.transports.values())
        results = await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)
        for transport, result in zip(transports, results, strict=True):
            if isinstance(result, Exception):
                log.warning("closing the %s transport failed: %s", transport.name, result)

    async def run_on_targets(
        self,
        task: RunningTask,
        targets: Iterable[TargetAddress],
        make_command: Callable[[TargetAddress], RunnerCommand],
        *,
        parallelism: int | None = None,
        recorder: TargetRecorder | None = None,
    ) -> list[TargetOutcome]:
        """Run on every target at once (at most ``parallelism`` at a time, if given: as one
        target finishes the next starts, a rolling window)."""
        targets = list(targets)
        record = recorder or TaskResults(task)
        gate = asyncio.Semaphore(parallelism) if parallelism else None
        for target in targets:
            await record.pending(target)

        async def one(target: TargetAddress) -> TargetOutcome:
            if gate is None:
                return await self.run_target(task, target, make_command(target), record)
            async with gate:
                return await self.run_target(task, target, make_command(target), record)

        return list(await asyncio.gather(*(one(target) for target in targets)))

    async def run_target(
        self,
        task: RunningTask,
        target: TargetAddress,
        command: RunnerCommand,
        recorder: TargetRecorder | None = None,
    ) -> TargetOutcome:
        """Run one command on one target; cancelling this cancels the remote work."""
        record = recorder or TaskResults(task)
        ref = TargetRef(target.id, target.name)
        transport = self.transport_for(target)
        if transport is None:
            message = (
                f"no transport '{target.communication_style}' is loaded for this target; "
                "check GET /api/v1/plugins"
            )
            task.error(message, ref)
            await record.finished(target, "failed", message=message)
            return TargetOutcome(target, None, message)
        await record.executing(target)

        output = TargetOutput(task, ref)

        async def on_event(event: dict[str, Any]) -> None:
            _log_event(task, output, event)
            await task.log_room()  # back-pressure: the agent, and its script, wait meanwhile

        try:
            try:
                result = await transport.run_runner(target, command, on_event)
            finally:
                output.finish()
        except asyncio.CancelledError:
            await asyncio.shield(record.finished(target, "canceled", message="canceled"))
            raise
        except CommsError as exc:
            message = f"{target.name}: {exc.message}"
            task.error(message, ref)
            await record.finished(target, "failed", message=exc.message)
            return TargetOutcome(target, None, exc.message)
        variables = [
            OutputVariable(
                str(v.get("name", "")), str(v.get("value", "")), bool(v.get("sensitive"))
            )
            for v in result.output_variables
        ]
        task.add_sensitive_values(v.value for v in variables if v.sensitive)
        state = "success" if result.success else ("canceled" if result.canceled else "failed")
        await record.finished(
            target,
            state,
            exit_code=result.exit_code,
            output_variables=variables,
            message=result.message,
        )
        if not result.success:
            task.error(
                f"{target.name}: failed with exit code {result.exit_code}"
                + (f": {result.message}" if result.message else ""),
                ref,
            )
        return TargetOutcome(target, result, None if result.success else result.message)


def _log_event(task: RunningTask, output: TargetOutput, event: dict[str, Any]) -> None:
    """A runner event as a task log line (already masked by the runner; masked again here)."""
    kind = event.get("type")
    if kind == "log":
        level = str(event.get("level", "info"))
        output.line(
            _LEVELS.get(level, level if level in ("warning", "error") else "info"),
            str(event.get("message", "")),
        )
    elif kind == "output-variable":
        # the runner logs the assignment itself; here only its value joins the masked set
        if event.get("sensitive"):
            task.add_sensitive_values([str(event.get("value", ""))])
    elif kind == "artifact":
        output.line("info", f"artifact {event.get('name')} ({event.get('length')} bytes)")
    elif kind == "progress":
        output.line("verbose", f"progress {event.get('percentage')}%: {event.get('message', '')}")
