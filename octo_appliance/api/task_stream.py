"""The server-sent-events stream of a task's log.

The generator runs on the event loop; every database read goes to the thread pool. When the
task runs in this process, new lines arrive through a :class:`~octo_appliance.engine.tasks.log.
Subscription` the moment they are appended, and the database is read only to start, to fill a
gap and as a slow safety net. Otherwise (the task is queued, or another node runs it) the
stream reads the database every second, or, with several nodes on PostgreSQL, whenever the
task's node notifies that its log grew or the task ended (a 10-second read as the safety
net). Either way the stream ends with an ``end`` event once
the stored state is final: the engine stores every line before the final state, so nothing can
follow it. While the database is unavailable the stream stays open (keepalives) and reads
again every second; lines appended meanwhile wait in the subscription.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from octo_appliance.db.base import iso
from octo_appliance.db.tasks import FINAL_STATES, ServerTask
from octo_appliance.engine.tasks.log import Subscription, TaskLogWriter, line_json, read_lines
from octo_appliance.engine.tasks.store import StoredLine
from octo_appliance.exceptions import BadRequest, DatabaseUnavailable
from octo_appliance.vault import Vault

if TYPE_CHECKING:
    from octo_appliance.transports.relay.node import LogWatch

KEEPALIVE_SECONDS = 15.0
#: how often the database is read when lines cannot come from this process
POLL_SECONDS = 1.0
#: the safety-net read while this process runs the task and pushes its lines
LOCAL_POLL_SECONDS = 10.0
PAGE_LINES = 500
#: what a browser's EventSource waits before it reconnects
RETRY_MILLISECONDS = 2000
MAX_SEQ = 2**31 - 1


def resume_point(last_event_id: str | None, since: int | None) -> int:
    """Where a stream starts: ``Last-Event-ID`` (a reconnect) wins over ``?since=``."""
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_SEQ:
            raise BadRequest(
                "the Last-Event-ID header must be a log sequence number",
                hint="send the id of the last event received, or leave the header out",
            )
        return int(text)
    return since or 0


def _log_event(line: StoredLine) -> str:
    data = json.dumps(line_json(line), separators=(",", ":"), ensure_ascii=False)
    return f"id: {line.seq}\nevent: log\ndata: {data}\n\n"


def _end_event(state: dict[str, Any]) -> str:
    return f"event: end\ndata: {json.dumps(state, separators=(',', ':'))}\n\n"


def _read(vault: Vault, task_id: str, since: int) -> tuple[dict[str, Any] | None, list[StoredLine]]:
    """The task's state (read first) and the stored lines after ``since``."""
    task = ServerTask.get_or_none(ServerTask.id == task_id)
    if task is None:
        return None, []
    state = {
        "state": task.state,
        "error": task.error or None,
        "finished_at": iso(task.finished_at),
    }
    return state, read_lines(vault, task_id, since, PAGE_LINES)


def _newer(last: int, *sources: Iterable[StoredLine]) -> list[StoredLine]:
    by_seq = {line.seq: line for source in sources for line in source if line.seq > last}
    return [by_seq[seq] for seq in sorted(by_seq)]


#: runs a blocking call in the API's worker threads
InWorker = Callable[[Callable[[], Any]], Awaitable[Any]]


class LogNotices(Protocol):
    """Notifications that a task's log grew on another node (the relay's, on PostgreSQL)."""

    def watch_log(self, task_id: str) -> LogWatch: ...

    def unwatch_log(self, watch: LogWatch) -> None: ...


async def log_events(
    vault: Vault,
    task_id: str,
    since: int,
    writer: TaskLogWriter | None,
    in_worker: InWorker,
    notices: LogNotices | None = None,
) -> AsyncIterator[str]:
    """The event stream text, chunk by chunk; with ``notices`` (several nodes on PostgreSQL),
    a task another node runs is read when that node says its log grew, not every second."""
    loop = asyncio.get_running_loop()
    watch = notices.watch_log(task_id) if notices is not None else None
    subscription: Subscription | None = None
    memory: list[StoredLine] = []
    if writer is not None:
        subscription, memory = writer.subscribe(task_id)
    last = since
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        sent_at = loop.time()
        while True:
            read = functools.partial(_read, vault, task_id, last)
            try:
                state, stored = await in_worker(read)
            except DatabaseUnavailable:  # the stream outlives an outage
                yield ": keepalive\n\n"
                await asyncio.sleep(POLL_SECONDS)
                continue
            if subscription is not None:
                memory += subscription.drain()
            for line in _newer(last, stored, memory):
                yield _log_event(line)
                last, sent_at = line.seq, loop.time()
            memory = []
            if state is None:
                yield _end_event({"state": "deleted", "error": None, "finished_at": None})
                return
            if len(stored) >= PAGE_LINES:
                continue  # more stored lines to send before following
            if state["state"] in FINAL_STATES:
                yield _end_event(state)
                return
            local = writer is not None and writer.is_open(task_id)
            pushed = local or watch is not None
            next_read = loop.time() + (LOCAL_POLL_SECONDS if pushed else POLL_SECONDS)
            while True:
                wait = min(next_read, sent_at + KEEPALIVE_SECONDS) - loop.time()
                if watch is not None and not local:
                    if await watch.wait(max(wait, 0.0)):
                        break  # the log grew (or the task ended) on its node: read it
                elif subscription is not None:
                    await subscription.wait(max(wait, 0.0))
                    fresh = subscription.drain()
                    if subscription.overflowed or (fresh and fresh[0].seq > last + 1):
                        subscription.overflowed = False
                        memory = fresh
                        break  # a gap: read the database
                    for line in _newer(last, fresh):
                        yield _log_event(line)
                        last, sent_at = line.seq, loop.time()
                    if subscription.finished:
                        break
                else:
                    await asyncio.sleep(max(wait, 0.0))
                now = loop.time()
                if now >= next_read:
                    break
                if now - sent_at >= KEEPALIVE_SECONDS:
                    yield ": keepalive\n\n"
                    sent_at = now
    finally:
        if subscription is not None and writer is not None:
            writer.unsubscribe(subscription)
        if watch is not None and notices is not None:
            notices.unwatch_log(watch)
