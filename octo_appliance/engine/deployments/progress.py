"""Per-step and per-target states and durations of a deployment, kept in the task.

Two records, both visible through ``GET /api/v1/tasks/{id}``:

- ``summary.steps``: one entry per step of the release (``name``, ``type``, ``state``:
  pending, executing, success, failed, skipped, canceled; ``reason`` when skipped;
  ``started_at``, ``finished_at``, ``duration_ms``, ``message``) with its ``targets``
  (``id``, ``name``, ``state``: pending, executing, success, failed, timed_out, skipped,
  excluded, canceled; ``attempts``, ``exit_code``, times and ``message``). Written to the
  task row as it changes (at most every :data:`PUBLISH_DELAY` seconds).
- the task's per-target results (``targets`` in the API): one per target for the whole
  deployment: ``failed`` if any step failed on it, ``skipped`` if it was excluded or never
  ran, else ``success``; its output variables are every step's, named
  ``Octo.Action[<step>].Output.<name>`` (sensitive ones sealed, as for any task).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from octo_appliance.db.base import iso, utcnow
from octo_appliance.db.tasks import EXECUTING, ServerTask
from octo_appliance.engine.deployments.plan import Plan
from octo_appliance.engine.tasks import OutputVariable, RunningTask
from octo_appliance.exceptions import DatabaseUnavailable

log = logging.getLogger("octo_appliance.engine")

PUBLISH_DELAY = 0.25
FAILED_STATES = frozenset({"failed", "timed_out"})


def _ms(started: datetime | None, finished: datetime | None) -> int | None:
    if started is None or finished is None:
        return None
    return int((finished - started).total_seconds() * 1000)


@dataclass
class _Aggregate:
    id: str
    name: str
    started_at: datetime | None = None
    #: step name -> (latest state of this target in that step, message)
    states: dict[str, tuple[str, str]] = field(default_factory=dict)
    outputs: list[OutputVariable] = field(default_factory=list)


class Progress:
    """Keeps both records for one running deployment (in the task's event loop)."""

    def __init__(self, task: RunningTask, plan: Plan, deployment_id: str) -> None:
        self.task = task
        self.steps: list[dict[str, Any]] = []
        self._started: dict[tuple[int, str], datetime] = {}
        self._step_started: dict[int, datetime] = {}
        self._entries: dict[tuple[int, str], dict[str, Any]] = {}
        self._targets: dict[str, _Aggregate] = {}
        self._saves: set[asyncio.Future[Any]] = set()
        self._publish: asyncio.TimerHandle | None = None
        self._publishing: asyncio.Task[None] | None = None
        for planned in plan.steps:
            self.steps.append(
                {
                    "name": planned.spec.name,
                    "type": planned.spec.type,
                    "state": "pending" if planned.run else "skipped",
                    "reason": planned.reason,
                    "started_at": None,
                    "finished_at": None,
                    "duration_ms": None,
                    "message": "",
                    "targets": [],
                }
            )
        task.summary.update(deployment_id=deployment_id, steps=self.steps)

    # -- steps ---------------------------------------------------------------------------

    def step_started(self, index: int) -> None:
        now = utcnow()
        self._step_started[index] = now
        self.steps[index].update(state=EXECUTING, started_at=iso(now))
        self.changed()

    def step_finished(self, index: int, state: str, message: str = "") -> None:
        now = utcnow()
        entry = self.steps[index]
        entry.update(state=state, finished_at=iso(now), message=self.task.mask(message))
        entry["duration_ms"] = _ms(self._step_started.get(index), now)
        self.changed()

    def step_skipped(self, index: int, reason: str) -> None:
        self.steps[index].update(state="skipped", reason=reason)
        self.changed()

    # -- targets of a step ---------------------------------------------------------------

    def target_pending(self, index: int, target_id: str, target_name: str) -> None:
        if (index, target_id) in self._entries:  # the step runs on it again
            self._entries[(index, target_id)]["state"] = "pending"
            self.changed()
            return
        entry = {
            "id": target_id,
            "name": target_name,
            "state": "pending",
            "attempts": 0,
            "exit_code": None,
            "started_at": None,
            "finished_at": None,
            "duration_ms": None,
            "message": "",
        }
        self._entries[(index, target_id)] = entry
        self.steps[index]["targets"].append(entry)
        self._targets.setdefault(target_id, _Aggregate(target_id, target_name))
        self.changed()

    def target_started(self, index: int, target_id: str) -> None:
        entry = self._entries[(index, target_id)]
        now = utcnow()
        if entry["started_at"] is None:
            self._started[(index, target_id)] = now
            entry["started_at"] = iso(now)
        entry["state"] = EXECUTING
        entry["attempts"] += 1
        aggregate = self._targets[target_id]
        if aggregate.started_at is None:
            aggregate.started_at = now
            self._save(aggregate.id, aggregate.name, EXECUTING, started_at=now)
        self.changed()

    def target_finished(
        self,
        index: int,
        target_id: str,
        state: str,
        *,
        exit_code: int | None = None,
        message: str = "",
    ) -> None:
        entry = self._entries[(index, target_id)]
        now = utcnow()
        entry.update(state=state, finished_at=iso(now), message=self.task.mask(message))
        if exit_code is not None:
            entry["exit_code"] = exit_code
        entry["duration_ms"] = _ms(self._started.get((index, target_id)), now)
        self._targets[target_id].states[self.steps[index]["name"]] = (state, message)
        self.changed()

    def target_package(
        self, index: int, target_id: str, target_name: str, transfer: dict[str, Any]
    ) -> None:
        """How the step's package reached the target (``package`` on its entry: mode
        cached/full/delta/failed and ``bytes_sent``), for people and for the bench."""
        if (index, target_id) not in self._entries:
            self.target_pending(index, target_id, target_name)
        entry = self._entries[(index, target_id)]
        entry["package"] = {**transfer, "message": self.task.mask(str(transfer["message"]))}
        self.changed()

    def target_outputs(self, target_id: str, step: str, values: list[OutputVariable]) -> None:
        aggregate = self._targets[target_id]
        prefix = f"Octo.Action[{step}].Output."
        kept = [v for v in aggregate.outputs if not v.name.startswith(prefix)]
        kept += [OutputVariable(prefix + v.name, v.value, v.sensitive) for v in values]
        aggregate.outputs = kept

    # -- storing -------------------------------------------------------------------------

    def _save(self, target_id: str, name: str, state: str, **fields: Any) -> None:
        """A target result write the deployment does not wait for (the engine orders them)."""
        future = asyncio.ensure_future(
            self.task.set_target_result(target_id, name, state, **fields)
        )
        self._saves.add(future)
        future.add_done_callback(self._saves.discard)

    def changed(self) -> None:
        """Publish the summary soon (coalescing bursts of changes)."""
        if self._publish is None:
            loop = asyncio.get_running_loop()
            self._publish = loop.call_later(PUBLISH_DELAY, self._start_publish)

    def _start_publish(self) -> None:
        self._publish = None
        if self._publishing is not None and not self._publishing.done():
            self.changed()  # one write at a time; try again shortly
            return
        self._publishing = asyncio.ensure_future(self.publish())

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.task.summary)

    async def publish(self) -> None:
        summary = self.snapshot()
        task_id = self.task.id

        def write() -> None:
            ServerTask.update(summary=summary).where(
                (ServerTask.id == task_id) & (ServerTask.state == EXECUTING)
            ).execute()

        try:
            await asyncio.to_thread(write)
        except DatabaseUnavailable:  # logged once by the database; the next change retries
            log.debug("task %s: deployment progress waits for the database", task_id)
        except Exception as exc:  # progress is advisory; the final summary is stored anyway
            log.warning("task %s: storing deployment progress failed: %s", task_id, exc)

    async def finish(self, *, final: bool) -> None:
        """Write every target's overall result (``final``: the deployment ended by itself;
        otherwise it was cancelled and the engine marks unfinished targets itself)."""
        if self._publish is not None:
            self._publish.cancel()
            self._publish = None
        if final:
            for aggregate in self._targets.values():
                state, message = _overall(aggregate)
                self._save(
                    aggregate.id,
                    aggregate.name,
                    state,
                    output_variables=aggregate.outputs,
                    message=message,
                )
        if self._saves:
            await asyncio.gather(*list(self._saves), return_exceptions=True)
        if self._publishing is not None:
            with contextlib.suppress(Exception):
                await self._publishing


def _overall(aggregate: _Aggregate) -> tuple[str, str]:
    states = [(step, state, message) for step, (state, message) in aggregate.states.items()]
    failed = [(step, message) for step, state, message in states if state in FAILED_STATES]
    if failed:
        step, message = failed[0]
        return "failed", f"failed in step '{step}'" + (f": {message}" if message else "")
    excluded = [step for step, state, _ in states if state == "excluded"]
    if excluded:
        return "skipped", f"excluded from the deployment after step '{excluded[0]}' failed"
    if any(state == "canceled" for _, state, _ in states):
        return "canceled", "canceled"
    if any(state == "success" for _, state, _ in states):
        return "success", ""
    return "skipped", "no step ran on this target"
