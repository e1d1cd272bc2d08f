"""Waiting out a database outage: the writes a task's end needs land once the database is back.

A task's outcome, its target results, its deployment's state and what follows from them (the
lifecycle's automatic deployments, closing its interruptions) must not be lost because
PostgreSQL restarted while the task ran: :func:`until_stored` repeats such a write while the
database is unavailable, backing off to :data:`RETRY_MAX_SECONDS`, and gives up only when
``keep_trying()`` turns false (the appliance is stopping: the next start recovers the task).

SQLite's "database is locked" (a writer held the lock past the busy timeout, 10 s: seen with
hundreds of tasks ending beside thousands of agent registrations) is waited out the same way:
the write was rolled back, so repeating it is safe. Before issue 14 it was raised instead, and
a task whose end met it was forgotten by the engine while its row stayed ``executing`` (and
ignored CANCEL) until the appliance restarted.

Only for writes that may safely run twice (an upsert, an ``UPDATE ... WHERE`` to a final state,
a computation that skips what is already done): a write whose connection was lost at its
commit may have been stored (:attr:`DatabaseUnavailable.outcome_unknown`). The outage itself is
logged once by the database (``db/reconnect.py``), not on every attempt here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import peewee

from octo_appliance.exceptions import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
RunDb = Callable[[Callable[[], T]], Awaitable[T]]

RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0


def retry_delays() -> Iterator[float]:
    """0.5, 1, 2, 4, 5, 5, ... seconds."""
    delay = RETRY_FIRST_SECONDS
    while True:
        yield delay
        delay = min(delay * 2, RETRY_MAX_SECONDS)


def is_busy(exc: BaseException) -> bool:
    """SQLite's lock stayed taken past the busy timeout: nothing was written, try again."""
    if not isinstance(exc, peewee.OperationalError):
        return False
    return "is locked" in str(exc)  # database, table or schema


def _always() -> bool:
    return True


async def _in_thread(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)


async def until_stored(
    call: Callable[[], T],
    *,
    run: RunDb[T] | None = None,
    keep_trying: Callable[[], bool] = _always,
    what: str = "a write",
) -> T:
    """``call()`` in a worker thread (``run``, default ``asyncio.to_thread``), repeated while
    the database is unavailable or locked; any other error, or ``keep_trying()`` false, is
    raised."""
    runner = run or _in_thread
    warned = False
    for delay in retry_delays():
        try:
            return await runner(call)
        except Exception as exc:
            busy = is_busy(exc)
            if not (busy or isinstance(exc, DatabaseUnavailable)) or not keep_trying():
                raise
            if busy and not warned:  # the database logs an outage, not a lock it waited for
                warned = True
                log.warning("%s waits for the database's write lock: %s", what, exc)
            log.debug("%s waits for the database (again in %.1f s)", what, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # retry_delays() never ends
