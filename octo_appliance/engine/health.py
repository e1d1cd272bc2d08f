"""Health checks of agent targets (task kind ``health-check``), on demand and on a schedule.

Each target's agent reports its version and directories (``agent.info``), then its runner
runs ``health-check`` (OS, CPU, memory, free disk; an optional health script). The check
writes the version on the target only for transports without an agent (SSH): an agent's is
written whenever it connects, and the check's may be stale by the time it ends (its runner
call waits while the agent updates itself, so it would put the old version back). The target's
status becomes Healthy / HealthyWithWarnings / Unhealthy from the runner's verdict, or
Unavailable when the agent cannot be reached.

A target's first check is queued when it registers, usually a moment before its agent starts:
that task carries ``connect_within`` (seconds), and a listening agent that refuses the
connection is dialled again until then (a polling agent's call already waits in its queue).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from octo_appliance.comms import CommsError
from octo_appliance.db import Target, utcnow
from octo_appliance.engine.dispatch import Dispatcher
from octo_appliance.engine.targets import load_addresses
from octo_appliance.engine.tasks import RunningTask, TargetRef, TaskFailed, TaskHandler
from octo_appliance.engine.tasks.outage import until_stored
from octo_appliance.transports.base import RunnerCommand, TargetAddress, Transport

KIND = "health-check"
HEALTHY, WITH_WARNINGS, UNHEALTHY, UNAVAILABLE = (
    "Healthy",
    "HealthyWithWarnings",
    "Unhealthy",
    "Unavailable",
)

#: seconds the check at registration waits for the new agent to answer
FIRST_CHECK_WAIT = 60.0
#: pause between two dials of an agent that is not up yet
REDIAL_PAUSE = 0.25

log = logging.getLogger("octo_appliance.engine")


async def _info_within(
    transport: Transport, target: TargetAddress, within: float
) -> dict[str, Any]:
    """``agent.info``, dialled again on failure until ``within`` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            info: dict[str, Any] = await transport.info(target)
            return info
        except CommsError:
            if loop.time() + REDIAL_PAUSE >= deadline:
                raise
        await asyncio.sleep(REDIAL_PAUSE)


async def _record(target_id: str, status: str, agent_version: str | None, seen: bool) -> None:
    """The target's health, waiting out a locked or unavailable database (it is safe to
    write twice)."""
    await until_stored(
        functools.partial(_write_health, target_id, status, agent_version, seen),
        what=f"the health of target {target_id}",
    )


def _write_health(target_id: str, status: str, agent_version: str | None, seen: bool) -> None:
    changes: dict[Any, Any] = {Target.health_status: status}
    if agent_version:
        changes[Target.agent_version] = agent_version
    if seen:
        changes[Target.last_seen] = utcnow()
    Target.update(changes).where(Target.id == target_id).execute()


def make_health_handler(dispatcher: Dispatcher) -> TaskHandler:
    async def check_one(task: RunningTask, target: TargetAddress) -> str:
        ref = TargetRef(target.id, target.name)
        transport = dispatcher.transport_for(target)
        if transport is None:
            task.error(f"no transport '{target.communication_style}' is loaded", ref)
            await _record(target.id, UNAVAILABLE, None, False)
            return UNAVAILABLE
        await task.set_target_result(target.id, target.name, "executing")
        try:
            within = float(task.arguments.get("connect_within") or 0)
            info = await _info_within(transport, target, within)
        except CommsError as exc:
            task.error(f"{target.name} is unavailable: {exc.message}", ref)
            await task.set_target_result(target.id, target.name, "failed", message=exc.message)
            await _record(target.id, UNAVAILABLE, None, False)
            return UNAVAILABLE
        agent_version = str(info.get("agent_version", ""))
        command = RunnerCommand(
            task_id=task.id,
            command="health-check",
            arguments={
                "agent_version": agent_version,
                "paths": {"work": info.get("work_dir", ""), "cache": info.get("cache_dir", "")},
                **({"script": task.arguments["script"]} if task.arguments.get("script") else {}),
            },
            exclusive=False,
        )
        outcome = (await dispatcher.run_on_targets(task, [target], lambda _t: command))[0]
        details = outcome.result.details if outcome.result is not None else {}
        status = str(details.get("status") or (HEALTHY if outcome.success else UNHEALTHY))
        if outcome.result is None:
            status = UNAVAILABLE
        task.info(f"{target.name}: {status} (agent {agent_version or '?'})", ref)
        # an agent's version is recorded when it connects (engine/agent_updates.py); the one
        # read here may be stale by now: the runner call waits while the agent updates itself
        stated = None if transport.agent_transport else agent_version
        await _record(target.id, status, stated, True)
        return status

    async def run(task: RunningTask) -> None:
        targets = await asyncio.to_thread(load_addresses, task.arguments.get("target_ids") or [])
        if not targets:
            task.info("no agent targets to check")
            return
        statuses = await asyncio.gather(*(check_one(task, t) for t in targets))
        bad = [
            t.name for t, s in zip(targets, statuses, strict=True) if s in (UNHEALTHY, UNAVAILABLE)
        ]
        if bad:
            raise TaskFailed(
                f"{len(bad)} of {len(targets)} target(s) unhealthy or unavailable: "
                + ", ".join(bad)
            )

    return run


class HealthScheduler:
    """Queues a health check of every agent target every ``interval`` seconds."""

    def __init__(self, interval: float, enqueue_all: Callable[[], str | None]) -> None:
        self.interval = interval
        self._enqueue_all = enqueue_all
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="octo-health-schedule")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self._enqueue_all)
            except Exception:  # keep the schedule alive; the next round tries again
                log.exception("could not queue the scheduled health check")
