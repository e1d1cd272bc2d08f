"""The task log: numbered, masked lines, sealed and stored in batches, and followed live.

:class:`TaskLogWriter` gives each line of a task the next sequence number, masks it with the
task's :class:`~octo_runner.masking.Masker` (so a secret never reaches memory buffers, the
database or a follower), and hands it at once to the task's followers. Lines reach the
database in batches (every ``flush_delay`` seconds or ``batch_lines`` lines) through the
engine's worker threads, so a chatty script costs one insert per batch and the event loop
never waits on the database. Lines waiting for the database are bounded: a producer that can
wait (runner events from a target) awaits :meth:`TaskLogWriter.room`, which holds it back
while ``max_unsaved`` lines are not stored yet (the agent, and so the script, wait with it).

A follower (:meth:`TaskLogWriter.subscribe`) gets the lines not stored yet along with its
subscription, then every new line as it is appended, from any thread and into any event loop;
together with the stored lines that is the whole log without gaps (duplicates are possible
and carry the same ``seq``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import peewee
from octo_runner.masking import Masker

from octo_appliance.db.base import iso, utcnow
from octo_appliance.db.tasks import LOG_LEVELS, TaskLogLine, check_line_id, log_line_aad
from octo_appliance.engine.tasks.outage import is_busy, retry_delays
from octo_appliance.engine.tasks.store import StoredLine, insert_lines
from octo_appliance.exceptions import DatabaseUnavailable, VaultError
from octo_appliance.vault import Vault

log = logging.getLogger(__name__)

T = TypeVar("T")
RunDb = Callable[[Callable[[], T]], Awaitable[T]]

#: Longer messages are cut (the runner caps its lines at 64 KiB too).
MAX_MESSAGE_CHARS = 65536
#: A follower that falls this far behind stops getting lines pushed and re-reads the database.
FOLLOWER_BACKLOG = 10_000
RETRY_AFTER_ERROR_SECONDS = 1.0
#: Lines not stored yet above which :meth:`TaskLogWriter.room` holds producers back.
MAX_UNSAVED_LINES = 20_000
UNREADABLE = (
    "(this log line does not decrypt: it was altered, or the appliance runs with another "
    "master key than the one it was written with)"
)


@dataclass(frozen=True)
class TargetRef:
    """The target a log line came from."""

    id: str
    name: str


def line_json(line: StoredLine) -> dict[str, Any]:
    """A line as the API shows it."""
    target = None
    if line.target_id is not None:
        target = {"id": line.target_id, "name": line.target_name or ""}
    return {
        "seq": line.seq,
        "time": iso(line.occurred_at),
        "level": line.level,
        "target": target,
        "message": line.message,
    }


def read_lines(vault: Vault, task_id: str, since: int, limit: int) -> list[StoredLine]:
    """Stored lines after ``since``, in order, opened (a line that does not open says so)."""
    rows = (
        TaskLogLine.select()
        .where((TaskLogLine.task == task_id) & (TaskLogLine.seq > since))
        .order_by(TaskLogLine.seq)
        .limit(limit)
    )
    lines = []
    for row in rows:
        try:
            if not check_line_id(row.id, task_id, row.seq):
                raise VaultError("a log line was moved")
            message = vault.open(row.message, log_line_aad(task_id, row.seq))
            level = row.level
        except VaultError:
            message, level = UNREADABLE, "error"
        lines.append(
            StoredLine(
                task_id, row.seq, level, message, row.occurred_at, row.target_id, row.target_name
            )
        )
    return lines


def count_lines(task_id: str) -> tuple[int, int]:
    """``(number of stored lines, highest seq)`` of a task."""
    query: Any = (
        TaskLogLine.select(peewee.fn.COUNT(TaskLogLine.id), peewee.fn.MAX(TaskLogLine.seq))
        .where(TaskLogLine.task == task_id)
        .tuples()
    )
    total, highest = query.get()
    return int(total or 0), int(highest or 0)


class Subscription:
    """One follower of one task's log, woken in its own event loop."""

    def __init__(self, task_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.task_id = task_id
        self._loop = loop
        self._event = asyncio.Event()
        self._lines: deque[StoredLine] = deque()
        self._lock = threading.Lock()
        #: set when lines were dropped (backlog full): re-read the database to fill the gap
        self.overflowed = False
        #: set when the task finished and its final state is stored
        self.finished = False

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the follower's loop is closed: it is gone
            self._loop.call_soon_threadsafe(self._event.set)

    def push(self, line: StoredLine) -> None:
        with self._lock:
            if len(self._lines) >= FOLLOWER_BACKLOG:
                self.overflowed = True
            else:
                self._lines.append(line)
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def drain(self) -> list[StoredLine]:
        """The lines pushed since the last drain (call in the follower's loop)."""
        self._event.clear()
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
        return lines

    async def wait(self, timeout: float) -> None:
        """Until a line or the finish arrives, or ``timeout`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # (wait_for may swallow a cancel on 3.11)
                await self._event.wait()


class TaskLogWriter:
    """Sequence numbers, masking, batched sealed inserts and live followers (thread-safe)."""

    def __init__(
        self,
        db: peewee.Database,
        vault: Vault,
        run_db: RunDb[Any],
        *,
        flush_delay: float = 0.05,
        batch_lines: int = 200,
    ) -> None:
        self._db = db
        self._vault = vault
        self._run_db = run_db
        self.flush_delay = flush_delay
        self.batch_lines = batch_lines
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._maskers: dict[str, Masker] = {}
        self._unsaved: list[StoredLine] = []
        self._saving: list[StoredLine] = []
        self._followers: dict[str, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._flushes: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.max_unsaved = MAX_UNSAVED_LINES
        self._stored: asyncio.Event | None = None
        #: why the last flush failed (None: it did not)
        self.failure: Exception | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the engine's loop (call from inside it)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._flush_lock = asyncio.Lock()
        self._stored = asyncio.Event()

    # ------------------------------------------------------------------ tasks

    def open_task(self, task_id: str, last_seq: int, masker: Masker) -> None:
        with self._lock:
            self._seq[task_id] = last_seq
            self._maskers[task_id] = masker

    def is_open(self, task_id: str) -> bool:
        return task_id in self._seq

    def masker(self, task_id: str) -> Masker:
        return self._maskers[task_id]

    def close_task(self, task_id: str) -> None:
        """The task's final state is stored: tell its followers, forget its counters."""
        with self._lock:
            self._seq.pop(task_id, None)
            self._maskers.pop(task_id, None)
            followers = list(self._followers.get(task_id, ()))
        for follower in followers:
            follower.finish()

    # ------------------------------------------------------------------ lines

    def append(
        self, task_id: str, level: str, message: str, target: TargetRef | None = None
    ) -> StoredLine:
        """Number, mask and queue one line; followers see it at once. Any thread."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
        with self._lock:
            if task_id not in self._seq:
                raise KeyError(f"task {task_id} is not running here")
            masked = self._maskers[task_id].mask(message)
            if len(masked) > MAX_MESSAGE_CHARS:
                masked = masked[:MAX_MESSAGE_CHARS] + " ... (cut)"
            self._seq[task_id] += 1
            line = StoredLine(
                task_id,
                self._seq[task_id],
                level,
                masked,
                utcnow(),
                target.id if target else None,
                target.name if target else None,
            )
            self._unsaved.append(line)
            pending = len(self._unsaved)
            followers = list(self._followers.get(task_id, ()))
        for follower in followers:
            follower.push(line)
        self._schedule(now=pending >= self.batch_lines)
        return line

    async def room(self) -> None:
        """Wait (in the engine's loop) while ``max_unsaved`` lines wait for the database."""
        stored = self._stored
        if stored is None or self.unsaved < self.max_unsaved:
            return
        self._schedule(now=True)  # later flushes (and retries after an error) come by themselves
        while self.unsaved >= self.max_unsaved and not self._closed:
            stored.clear()
            await stored.wait()

    def subscribe(self, task_id: str) -> tuple[Subscription, list[StoredLine]]:
        """Follow a task from the calling event loop: ``(subscription, lines not stored yet)``."""
        subscription = Subscription(task_id, asyncio.get_running_loop())
        with self._lock:
            self._followers.setdefault(task_id, set()).add(subscription)
            pending = [line for line in self._saving + self._unsaved if line.task_id == task_id]
        return subscription, pending

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            followers = self._followers.get(subscription.task_id)
            if followers is not None:
                followers.discard(subscription)
                if not followers:
                    del self._followers[subscription.task_id]

    # ------------------------------------------------------------------ storing

    def _schedule(self, *, now: bool) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        if threading.get_ident() == self._loop_thread:
            self._schedule_in_loop(now)
        else:
            with contextlib.suppress(RuntimeError):  # the engine's loop is closed
                loop.call_soon_threadsafe(self._schedule_in_loop, now)

    def _schedule_in_loop(self, now: bool) -> None:
        assert self._loop is not None
        if self._closed:
            return
        if now:
            self._start_flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(self.flush_delay, self._start_flush)

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task: asyncio.Task[Any] = asyncio.ensure_future(self.flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush(self) -> bool:
        """Store every line appended so far (in the engine's loop); False if that failed."""
        assert self._flush_lock is not None, "bind() the writer first"
        async with self._flush_lock:
            if self._timer is not None:  # this flush takes what the timer was waiting for
                self._timer.cancel()
                self._timer = None
            with self._lock:
                batch, self._unsaved = self._unsaved, []
                self._saving = batch
            if not batch:
                return True
            try:
                # the writer alone numbers these lines, so a line already stored is one of
                # these, from an attempt whose commit was lost with the connection
                await asyncio.shield(
                    self._run_db(
                        lambda: insert_lines(self._db, self._vault, batch, ignore_stored=True)
                    )
                )
                self.failure = None
            except Exception as exc:  # keep the lines and try again
                self.failure = exc
                if isinstance(exc, DatabaseUnavailable):  # logged once by the database
                    log.debug("%d task log line(s) wait for the database", len(batch))
                else:
                    log.error("storing %d task log line(s) failed, retrying: %s", len(batch), exc)
                with self._lock:
                    self._unsaved = batch + self._unsaved
                if self._loop is not None and self._timer is None:
                    self._timer = self._loop.call_later(
                        RETRY_AFTER_ERROR_SECONDS, self._start_flush
                    )
                return False
            finally:
                with self._lock:
                    self._saving = []
                if self._stored is not None:
                    self._stored.set()
            return True

    async def flush_until_stored(self, keep_trying: Callable[[], bool]) -> bool:
        """:meth:`flush`, repeated while the database is unavailable and ``keep_trying()``."""
        for delay in retry_delays():
            if await self.flush():
                return True
            failure = self.failure
            waits = isinstance(failure, DatabaseUnavailable) or (
                failure is not None and is_busy(failure)
            )
            if not (waits and keep_trying()):
                return False
            await asyncio.sleep(delay)
        return False

    async def close(self) -> bool:
        """Store what is left and schedule nothing more (the engine is stopping)."""
        self._closed = True
        if self._stored is not None:
            self._stored.set()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        stored = await self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return stored

    @property
    def unsaved(self) -> int:
        with self._lock:
            return len(self._unsaved) + len(self._saving)
