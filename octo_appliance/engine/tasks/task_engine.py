"""The task executor: claims queued tasks under a cap and runs their handlers.

One :class:`TaskEngine` per appliance process (node). It runs in an asyncio loop: the server's
own (``await engine.start()``), or a private one in a background thread
(``engine.start_in_thread()``, for tools and tests). Database work goes through a small pool of
worker threads of its own, so neither the loop nor the API's thread pool waits on it.

Life of a task: ``enqueue`` inserts it ``queued`` and wakes the claim loop (after the
enqueuing transaction commits). The loop claims the oldest queued tasks while fewer than
``task_cap`` run here (and re-checks every ``poll_interval`` seconds for tasks queued by other
processes), runs each kind's handler, and records the final state. A task queued with
``not_before`` (a deployment scheduled ahead) stays ``queued``, holding no slot, until then:
the loop sleeps only until the earliest such time, so it starts on time, also after a
restart. A task still ``executing`` under this node's name when the engine starts was running
when the process died: it is failed with a log line saying so, never run again by itself;
enqueue a new task to re-run it.

While the database is unavailable the claim loop keeps trying quietly (the database logs the
outage once), and a task that ends meanwhile keeps its slot until its target results, log and
final state are stored (:mod:`.outage`): it reads its real outcome once the database is back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, Unpack

import peewee
from octo_runner.masking import Masker

from octo_appliance.config import Config
from octo_appliance.db.base import utcnow
from octo_appliance.db.tasks import CANCELED, FAILED, FINAL_TARGET_STATES, SUCCESS, TIMED_OUT
from octo_appliance.engine.tasks import claims, heap, store
from octo_appliance.engine.tasks.claims import ClaimedTask
from octo_appliance.engine.tasks.creation import TaskOptions, create_task
from octo_appliance.engine.tasks.kinds import RunningTask, TaskKindRegistry
from octo_appliance.engine.tasks.log import TaskLogWriter
from octo_appliance.engine.tasks.loop_thread import LoopThread
from octo_appliance.engine.tasks.outage import until_stored
from octo_appliance.engine.tasks.output import DEFAULT_MAX_LINES
from octo_appliance.engine.tasks.running import (
    RESTART_MESSAGE,
    STOP_WAIT_SECONDS,
    Running,
    outcome,
    release_later,
    until_handler_ends,
)
from octo_appliance.engine.tasks.store import TargetResult
from octo_appliance.exceptions import DatabaseUnavailable
from octo_appliance.vault import Vault

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_POLL_INTERVAL = 3.0
#: how long stop() waits for cancelled handlers to clean up before giving up on them
STOP_GRACE_SECONDS = 10.0


class TaskEngine:
    """Claims and runs server tasks for one node; see the module docstring."""

    def __init__(
        self,
        db: peewee.Database,
        vault: Vault,
        node_name: str,
        *,
        task_cap: int = Config.task_cap,
        kinds: TaskKindRegistry | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        db_threads: int = 4,
        task_log_max_lines: int = DEFAULT_MAX_LINES,
        lease: Callable[[], bool] | None = None,
        stop_wait: float = STOP_WAIT_SECONDS,
    ) -> None:
        if task_cap < 1:
            raise ValueError("the task cap must be at least 1")
        self.db = db
        self.vault = vault
        self.node = node_name
        self.task_cap = task_cap
        self.kinds = kinds or TaskKindRegistry()
        self.poll_interval = poll_interval
        #: lines of script output one task logs before the rest is summarised
        self.task_log_max_lines = task_log_max_lines
        #: asked inside every claim's transaction: may this node take tasks now (its node
        #: registry lease: alive, not draining; see octo_appliance/nodes/)
        self.lease = lease
        #: how long a canceled, timed-out or fenced handler may take to end (running.py)
        self.stop_wait = stop_wait
        #: why the tasks were stopped by :meth:`fence` (the error they end with)
        self._fenced_reason = ""
        self._db_threads = db_threads
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_event: asyncio.Event | None = None
        self._claim_task: asyncio.Task[None] | None = None
        self._running: dict[str, Running] = {}
        self._stopping = False
        #: a claim's commit was lost with the connection: it may have claimed tasks we never got
        self._claim_unsure = False
        self._thread: LoopThread | None = None
        self.log = TaskLogWriter(db, vault, self._run_db)
        #: ids of the tasks failed at start because the process had died under them
        self.recovered: list[str] = []
        #: gives the C heap a burst of tasks freed back once none runs (:mod:`.heap`)
        self.heap_trim = heap.IdleTrim(self._busy, self._in_db_thread)

    # ------------------------------------------------------------------ lifecycle

    @property
    def started(self) -> bool:
        return self._loop is not None and not self._stopping

    async def start(self) -> None:
        """Recover orphaned tasks, then start claiming (inside the running loop)."""
        if self._loop is not None:
            raise RuntimeError("the task engine was already started")
        self._loop = asyncio.get_running_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._db_threads, thread_name_prefix="octo-tasks-db"
        )
        self._wake_event = asyncio.Event()
        self.log.bind(self._loop)
        self.recovered = await self._run_db(
            lambda: store.recover_orphans(self.db, self.vault, self.node, RESTART_MESSAGE)
        )
        if self.recovered:
            log.warning(
                "failed %d task(s) left running when the appliance stopped", len(self.recovered)
            )
        self._claim_task = asyncio.create_task(self._claim_loop(), name="octo-task-claims")

    async def stop(self, grace: float = STOP_GRACE_SECONDS, finish_within: float = 0.0) -> None:
        """Stop claiming (a claim in flight hands its tasks back to the queue); running tasks
        may finish for ``finish_within`` seconds, then are cancelled and failed with the
        restart message."""
        if self._loop is None or self._stopping:
            return
        self._stopping = True
        if self._wake_event is not None:
            self._wake_event.set()
        if self._claim_task is not None:
            # not cancelled: a claim in flight must finish so its tasks can be handed back
            await asyncio.gather(self._claim_task, return_exceptions=True)
        await self._let_finish(finish_within)
        for task_id in list(self._running):
            self._interrupt(task_id, "shutdown")
        runners = [entry.runner for entry in self._running.values() if entry.runner is not None]
        if runners:
            _, pending = await asyncio.wait(runners, timeout=grace)
            if pending:
                log.warning(
                    "%d task(s) did not stop within %.0f s; the next start fails them",
                    len(pending),
                    grace,
                )
        if not await self.log.close():
            log.error("%d task log line(s) could not be stored", self.log.unsaved)
        executor = self._executor
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)

    async def _let_finish(self, seconds: float) -> None:
        runners = [entry.runner for entry in self._running.values() if entry.runner is not None]
        if runners and seconds > 0:
            log.info("waiting up to %.0f s for %d running task(s)", seconds, len(runners))
            await asyncio.wait(runners, timeout=seconds)

    @property
    def running_count(self) -> int:
        return len(self._running)

    def fence(self, reason: str) -> None:
        """This node lost its lease (declared dead, or its heartbeat could not be stored in
        time): stop every running task now, failed with ``reason``; in the loop."""
        self._fenced_reason = reason
        for task_id in list(self._running):
            self._interrupt(task_id, "fenced")

    def start_in_thread(self, timeout: float = 30.0) -> None:
        """Run the engine in a private event loop on a background thread."""
        self._thread = LoopThread("octo-task-engine")
        self._thread.start(self.start, timeout)

    def stop_in_thread(self, timeout: float = 30.0) -> None:
        """Stop an engine started with :meth:`start_in_thread` and end its thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop(self.stop, timeout)

    # ------------------------------------------------------------------ outside calls

    def wake(self) -> None:
        """Look for queued tasks now (any thread)."""
        loop, event = self._loop, self._wake_event
        if loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):  # loop closed: the engine is gone
            loop.call_soon_threadsafe(event.set)

    def enqueue(
        self,
        kind: str,
        description: str,
        arguments: Mapping[str, Any] | None = None,
        sensitive_arguments: Mapping[str, Any] | None = None,
        **options: Unpack[TaskOptions],
    ) -> str:
        """Queue a task and return its id (:func:`create_task`, same parameters).
        Blocking (database): call it from a worker thread. Inside a transaction the engine
        is woken when it commits, so it never looks before the row is visible."""
        if kind not in self.kinds:
            raise ValueError(f"no handler is registered for task kind '{kind}'")
        task_id = create_task(
            self.vault, kind, description, arguments, sensitive_arguments, **options
        )
        self.db.after_commit(self.wake)
        return task_id

    def request_cancel(self, task_id: str, by: str = "") -> None:
        """Stop a task's handler if it runs here (any thread). The database flag is the
        caller's (:func:`store.cancel_task`); other nodes see it at their next poll."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._interrupt, task_id, "canceled", by)

    def cancel(self, task_id: str, by: str = "") -> str | None:
        """Cancel a task (blocking; from a worker thread): see :func:`store.cancel_task`."""
        outcome = store.cancel_task(self.db, self.vault, task_id, by)
        if outcome == "requested":
            self.db.after_commit(lambda: self.request_cancel(task_id, by))
        return outcome

    # ------------------------------------------------------------------ internals

    async def _run_db(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call)

    def _busy(self) -> bool:
        return bool(self._running) or self._stopping or self._executor is None

    def _in_db_thread(self, call: Callable[[], object]) -> None:
        if self._executor is not None:
            self._executor.submit(call)

    def _keep_trying(self) -> bool:
        """Wait out a database outage unless stopping (the next start recovers the task)."""
        return not self._stopping

    async def _claim_loop(self) -> None:
        assert self._wake_event is not None
        loop = asyncio.get_running_loop()
        next_flag_check = 0.0
        while not self._stopping:
            self._wake_event.clear()
            wait = self.poll_interval
            try:
                if self._claim_unsure:  # tasks such a claim took never started: re-queue them
                    running = list(self._running)
                    await self._run_db(
                        functools.partial(claims.release_unstarted, self.db, self.node, running)
                    )
                    self._claim_unsure = False
                free = self.task_cap - len(self._running)
                if free > 0:
                    claimed = await self._run_db(
                        functools.partial(
                            claims.claim_tasks, self.db, self.vault, self.node, free, self.lease
                        )
                    )
                    if self._stopping:  # stop() came while claiming: hand them back
                        ids = [task.id for task in claimed]
                        await self._run_db(
                            functools.partial(claims.release_tasks, self.db, self.node, ids)
                        )
                        break
                    for task in claimed:
                        self._launch(task)
                if self._running and loop.time() >= next_flag_check:
                    next_flag_check = loop.time() + self.poll_interval
                    ids = list(self._running)
                    flags = await self._run_db(functools.partial(store.cancel_flags, ids))
                    for task_id, by in flags.items():
                        self._interrupt(task_id, "canceled", by)
                wait = await self._until_next_due(wait)
            except DatabaseUnavailable as exc:  # logged once by the database
                self._claim_unsure = self._claim_unsure or exc.outcome_unknown
                log.debug("claiming server tasks waits for the database: %s", exc)
            except Exception as exc:  # a database hiccup must not end the loop
                log.error("claiming server tasks failed (retrying): %s", exc)
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake_event.wait()

    async def _until_next_due(self, wait: float) -> float:
        """``wait``, or less when a scheduled task becomes due sooner (so it starts on time)."""
        if len(self._running) >= self.task_cap:
            return wait  # a finishing task wakes the loop
        now = utcnow()
        due = await self._run_db(functools.partial(claims.next_due, now))
        if due is None:
            return wait
        return min(wait, max((due - now).total_seconds(), 0.0) + 0.001)

    def _launch(self, claimed: ClaimedTask) -> None:
        masker = Masker(store.sensitive_strings(claimed.sensitive_arguments))
        self.log.open_task(claimed.id, claimed.last_seq, masker)
        running = RunningTask(
            claimed, self.node, self.log, masker, self._save_result, self.task_log_max_lines
        )
        entry = Running(running)
        self._running[claimed.id] = entry
        entry.runner = asyncio.create_task(self._run(entry), name=f"octo-task-{claimed.id}")
        if claimed.cancel_requested:  # flagged while we claimed it
            self._interrupt(claimed.id, "canceled", claimed.canceled_by)

    async def _save_result(self, task_id: str, result: TargetResult) -> None:
        """Store a target result, in call order, even if the awaiting handler is cancelled
        (its save still runs: ``_finish``'s final result must land after it, not race it);
        results arriving while a save waits join it: one commit per burst (issue 14)."""
        entry = self._running[task_id]
        snapshot = dataclasses.replace(result, output_variables=list(result.output_variables))
        if entry.waiting is not None and entry.last_save is not None:
            entry.waiting.append(snapshot)
            return await asyncio.shield(entry.last_save)
        previous, entry.waiting = entry.last_save, (batch := [snapshot])

        async def save() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            if entry.waiting is batch:
                entry.waiting = None  # from here on, results wait for this save
            await until_stored(
                functools.partial(store.save_target_results, self.db, self.vault, task_id, batch),
                run=self._run_db,
                keep_trying=self._keep_trying,
                what=f"the results of task {task_id} on {batch[0].target_name} and others",
            )

        current = asyncio.ensure_future(save())
        entry.last_save = current
        await asyncio.shield(current)

    def _interrupt(self, task_id: str, reason: str, by: str = "") -> None:
        """Cancel a running handler for ``reason`` (first reason wins); in the loop."""
        entry = self._running.get(task_id)
        if entry is None or entry.task.stop_reason is not None:
            return
        entry.task.stop_reason = reason
        entry.canceled_by = by
        if reason == "canceled":
            who = f" by {by}" if by else ""
            entry.task.log("warning", f"Cancel requested{who}; stopping the task.")
        if entry.handler is not None:
            entry.handler.cancel()
            release_later(entry, self.stop_wait)

    async def _run(self, entry: Running) -> None:
        task = entry.task
        state, error = SUCCESS, ""
        try:
            handler = self.kinds.get(task.kind)
            if handler is None:
                state = FAILED
                error = f"no handler for task kind '{task.kind}' on node {self.node}"
            else:
                task.log("verbose", f"Running on node {self.node}.")
                if task.timeout_seconds:
                    entry.timer = asyncio.get_running_loop().call_later(
                        task.timeout_seconds, self._interrupt, task.id, "timed_out"
                    )
                entry.released = asyncio.get_running_loop().create_future()
                entry.handler = asyncio.create_task(handler(task))
                if task.stop_reason is not None:
                    entry.handler.cancel()
                    release_later(entry, self.stop_wait)
                await until_handler_ends(entry, self.stop_wait)
                state, error = outcome(entry, self._fenced_reason)
        except Exception as exc:  # bookkeeping must still record the end
            state, error = FAILED, task.mask(f"the task engine failed: {exc}")
            log.error("task %s: %s", task.id, error)
        finally:
            if entry.timer is not None:
                entry.timer.cancel()
        await self._finish(entry, state, error)

    async def _finish(self, entry: Running, state: str, error: str) -> None:
        task = entry.task
        try:
            target_state = state if state in (CANCELED, TIMED_OUT) else FAILED
            for result in list(task.targets.values()):
                if result.state not in FINAL_TARGET_STATES:
                    await task.set_target_result(
                        result.target_id,
                        result.target_name,
                        target_state,
                        message=error or "no result was reported for this target",
                    )
            states = Counter(result.state for result in task.targets.values())
            bad = sum(states[s] for s in (FAILED, TIMED_OUT, CANCELED))
            if state == SUCCESS and bad:
                state = FAILED
                error = f"{bad} of {len(task.targets)} target(s) did not succeed"
            if state == SUCCESS:
                task.log("info", "The task succeeded.")
            elif state == CANCELED:
                task.log("warning", f"The task was {error}.")
            else:
                ended = "timed out" if state == TIMED_OUT else "failed"
                task.log("error", f"The task {ended}: {error}")
            summary = {
                **task.summary,
                "targets": len(task.targets),
                "states": dict(sorted(states.items())),
            }
            if entry.last_save is not None:
                await asyncio.gather(entry.last_save, return_exceptions=True)
            await self.log.flush_until_stored(self._keep_trying)
            done = await until_stored(
                lambda: store.finish_task(self.db, task.id, self.node, state, error, summary),
                run=self._run_db,
                keep_trying=self._keep_trying,
                what=f"the end of task {task.id}",
            )
            if not done:
                log.warning("task %s was no longer executing on %s at its end", task.id, self.node)
        except Exception as exc:  # the next start recovers it
            log.error("recording the end of task %s failed: %s", task.id, exc)
        finally:
            self.log.close_task(task.id)
            self._running.pop(task.id, None)
            if not self._running:
                self.heap_trim.idle()
            self.wake()
