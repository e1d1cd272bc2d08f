"""When it is quiet: no task running in this agent process, and the machine mostly idle.

Runner fork servers (:mod:`octo_appliance.agent.forkpool`) cost the CPU of an interpreter
start and every command's imports each. Started the moment a task ends, many of them at once
(one per identity after a fan-out) competed with what came right after: the next step's
tasks, the appliance finishing the deployment on a small shared machine, the other agent
processes still running their part of a large fan-out. So they are started only once this
process has had no task for :data:`QUIET_SECONDS` *and* the machine's CPUs were at least
:data:`IDLE_SHARE` idle over that time: in the gaps between the work, never beside it. A
machine that is never that idle (shared with other work: issue 14 measured a fan-out bench
where no fork server ever started, so every task paid an interpreter start, ~0.09 s of CPU
per target) does not postpone them for ever: after :data:`PATIENCE_SECONDS` without a task
in this process they start anyway, once, instead of every later task paying the start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable

import psutil

from octo_appliance.agent.loop_local import LoopLocal

#: seconds without any task in this process before waiting work (spare starts) runs
QUIET_SECONDS = 0.25
#: the share of the machine's CPU time that must have been idle over those seconds
IDLE_SHARE = 0.5
#: seconds without any task in this process after which waiting work runs on a busy machine
PATIENCE_SECONDS = 2.0


class Activity:
    """Counts the tasks running in one event loop and runs deferred work when it is quiet
    (its methods are called from that loop; it holds no reference to it, so a closed loop
    and its activity are forgotten together)."""

    def __init__(self) -> None:
        self.quiet = QUIET_SECONDS
        self.idle_share = IDLE_SHARE
        self.patience = PATIENCE_SECONDS
        self.running = 0
        self._last_end = time.monotonic()
        self._waiting: dict[Hashable, Callable[[], None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._cpu_before: tuple[float, float] = (0.0, 0.0)

    def task_started(self) -> None:
        self.running += 1

    def task_ended(self) -> None:
        self.running -= 1
        self._last_end = time.monotonic()
        self._arm()

    def when_quiet(self, key: Hashable, work: Callable[[], None]) -> None:
        """Run ``work`` once it is quiet (a later call with the same ``key`` replaces an
        earlier one that has not run yet)."""
        self._waiting[key] = work
        self._arm()

    def cancel(self, key: Hashable) -> None:
        self._waiting.pop(key, None)

    def _arm(self) -> None:
        """Watch the next :attr:`quiet` seconds (while something waits and no task runs)."""
        if self._timer is not None or not self._waiting or self.running:
            return
        self._cpu_before = _cpu_times()
        self._timer = asyncio.get_running_loop().call_later(self.quiet, self._check)

    def _check(self) -> None:
        self._timer = None
        quiet_for = time.monotonic() - self._last_end
        idle = quiet_for >= self.patience or self._machine_was_idle()
        if self.running or quiet_for < self.quiet or not idle:
            self._arm()
            return
        waiting, self._waiting = self._waiting, {}
        for work in waiting.values():
            work()

    def _machine_was_idle(self) -> bool:
        idle_before, total_before = self._cpu_before
        idle, total = _cpu_times()
        if total <= total_before:  # no tick counted yet: nothing says it was busy
            return True
        return (idle - idle_before) / (total - total_before) >= self.idle_share


def _cpu_times() -> tuple[float, float]:
    """Idle and total CPU seconds of the machine so far (all CPUs)."""
    times = psutil.cpu_times()
    return times.idle + getattr(times, "iowait", 0.0), sum(times)


_ACTIVITY = LoopLocal(Activity)


def activity() -> Activity:
    """The activity of the running event loop (the agent process has one)."""
    return _ACTIVITY.get()
