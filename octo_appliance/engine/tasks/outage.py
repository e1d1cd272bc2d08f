"""Waiting out a database outage: the writes a task's end needs land once the database is back.

A task's outcome, its target results, its deployment's state and what follows from them (the
lifecycle's automatic deployments, closing its interruptions) must not be lost because
PostgreSQL restarted while the task ran: :func:`until_stored` repeats such a write while the
database is unavailable, backing off to :data:`RETRY_MAX_SECONDS`, and gives up only when
``keep_trying()`` turns false (the appliance is stopping: the next start recovers the task).

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
    the database is unavailable; any other error, or ``keep_trying()`` false, is raised."""
    runner = run or _in_thread
    for delay in retry_delays():
        try:
            return await runner(call)
        except DatabaseUnavailable:
            if not keep_trying():
                raise
            log.debug("%s waits for the database (again in %.1f s)", what, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # retry_delays() never ends
