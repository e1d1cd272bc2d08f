"""A task the engine runs (its handler, timer and stop reason) and how it ended.

The stop reasons: ``canceled`` (someone asked), ``timed_out`` (its own timeout), ``shutdown``
(this node stops), ``fenced`` (this node lost its node-registry lease: another node may have
declared it dead, so the task must not go on here; octo_appliance/nodes/).

A stopped handler gets :data:`STOP_WAIT_SECONDS` to end (it sees ``CancelledError`` and
cleans up, e.g. cancels its remote work); past that the engine records the task's end without
it (:func:`release_later`): a handler that swallows the cancel, or waits on something the
cancel does not reach, must not keep its task ``executing`` and its slot taken for ever.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from dataclasses import dataclass

from octo_appliance.db.tasks import CANCELED, FAILED, SUCCESS, TIMED_OUT
from octo_appliance.engine.tasks.kinds import RunningTask, TaskFailed
from octo_appliance.engine.tasks.store import TargetResult

log = logging.getLogger("octo_appliance.engine.tasks.task_engine")

RESTART_MESSAGE = "the appliance stopped while this task was running; re-run it"
#: how long a stopped handler may take to end before the task ends without it
STOP_WAIT_SECONDS = 60.0


@dataclass
class Running:
    task: RunningTask
    runner: asyncio.Task[None] | None = None
    handler: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    canceled_by: str = ""
    #: the latest target-result save; each save waits for the one before (see _save_result),
    #: and ``waiting`` are the results it will write while it waits (later ones join them)
    last_save: asyncio.Future[None] | None = None
    waiting: list[TargetResult] | None = None
    #: done when the engine stops waiting for a stopped handler (see release_later)
    released: asyncio.Future[None] | None = None
    release_timer: asyncio.TimerHandle | None = None


def release_later(entry: Running, seconds: float) -> None:
    """The handler was asked to stop: stop waiting for it after ``seconds`` (in the loop)."""
    released = entry.released
    if released is None or entry.release_timer is not None:
        return
    entry.release_timer = asyncio.get_running_loop().call_later(seconds, _release, released)


def _release(released: asyncio.Future[None]) -> None:
    if not released.done():
        released.set_result(None)


async def until_handler_ends(entry: Running, seconds: float) -> None:
    """Wait for the handler, or until it was asked to stop and ``seconds`` have passed then;
    a handler let go is logged (it may still run: nothing more can stop it from here)."""
    handler, released = entry.handler, entry.released
    assert handler is not None and released is not None
    try:
        await asyncio.wait({handler, released}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if entry.release_timer is not None:
            entry.release_timer.cancel()
    if not handler.done():
        task = entry.task
        message = (
            f"The task's handler did not stop within {seconds:g} s of being asked "
            f"({task.stop_reason}); its end is recorded without it."
        )
        log.error("task %s (%s): %s", task.id, task.kind, message)
        task.log("error", message)


def outcome(entry: Running, fenced_reason: str) -> tuple[str, str]:
    """The final state and error of a task whose handler ended (``fenced_reason``: the error
    of a task stopped because its node lost its lease)."""
    task = entry.task
    assert entry.handler is not None
    reason = task.stop_reason
    if reason == "canceled":
        return CANCELED, f"canceled by {entry.canceled_by}" if entry.canceled_by else "canceled"
    if reason == "timed_out":
        return TIMED_OUT, f"the task ran longer than its timeout of {task.timeout_seconds} s"
    if reason == "shutdown":
        return FAILED, RESTART_MESSAGE
    if reason == "fenced":
        return FAILED, fenced_reason
    if entry.handler.cancelled():
        return FAILED, "the task's handler was cancelled without a request"
    exc = entry.handler.exception()
    if isinstance(exc, TaskFailed):
        return FAILED, task.mask(exc.message)
    if exc is not None:
        text = task.mask("".join(traceback.format_exception(exc)))
        log.error("task %s (%s) hit an unexpected error:\n%s", task.id, task.kind, text)
        return FAILED, task.mask(f"unexpected error ({type(exc).__name__}): {exc}")
    return SUCCESS, ""
