"""One keepalive timer per event loop for all its connections, instead of a task each.

A listener with 5,000 polling agents had 5,000 keepalive tasks waking every second to find,
nearly always, nothing to do (docs/performance.md). Here each connection is an entry in one
heap, keyed by the next moment something can be due for it (a PING, or the dead bound); the
loop's single timer visits only the entries that are due, and each visit says when the
connection is next due. Activity does not touch the heap: a connection that heard or sent
something meanwhile just answers a later time when visited.

Visits are gathered: the timer is armed at most every ``GATHER`` of the shortest check
interval among the connections (0.25 s with the defaults), so a PING or the dead verdict is
at most that late; the per-connection loop this replaces was up to a whole second late.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import weakref
from typing import Protocol

log = logging.getLogger("octo_appliance.comms")

#: the timer fires at most once per this share of the shortest check interval
GATHER = 0.25


class Kept(Protocol):
    """What the scheduler asks of a connection."""

    def keepalive_due(self, now: float) -> float | None:
        """Ping or close if due at ``now``; the next time to look, or None to forget it."""
        ...


class KeepaliveScheduler:
    """The keepalive timer of one event loop: :meth:`for_loop` gives the loop's own."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, KeepaliveScheduler] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Kept]] = []
        self._order = itertools.count()  # ties never compare connections
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._gap = float("inf")
        self._last_run = float("-inf")

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop) -> KeepaliveScheduler:
        scheduler = cls._by_loop.get(loop)
        if scheduler is None:
            scheduler = cls._by_loop[loop] = cls(loop)
        return scheduler

    def __len__(self) -> int:
        """Connections it looks after (closed ones leave at their next visit)."""
        return len(self._heap)

    def add(self, connection: Kept, due: float, tick: float) -> None:
        """Visit ``connection`` at ``due`` (loop time) and from then on when it says;
        ``tick``: how late its checks may be (its settings' ``keepalive_tick``)."""
        self._gap = min(self._gap, tick * GATHER)
        heapq.heappush(self._heap, (due, next(self._order), connection))
        self._arm()

    def _arm(self) -> None:
        if not self._heap:
            return
        when = max(self._heap[0][0], self._last_run + self._gap)
        if self._timer is not None:
            if self._armed_at <= when:
                return
            self._timer.cancel()
        self._armed_at = when
        self._timer = self._loop.call_at(when, self._run)

    def _run(self) -> None:
        self._timer = None
        now = self._last_run = self._loop.time()
        heap = self._heap
        again: list[tuple[float, int, Kept]] = []
        while heap and heap[0][0] <= now:
            _, order, connection = heapq.heappop(heap)
            try:
                due = connection.keepalive_due(now)
            except Exception:  # one broken connection must not stop the others' keepalive
                log.exception("keepalive check failed; the connection is no longer checked")
                continue
            if due is not None:
                again.append((max(due, now), order, connection))
        for entry in again:  # after the loop: an entry due at once waits for the next run
            heapq.heappush(heap, entry)
        self._arm()
