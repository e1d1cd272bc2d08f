"""Runners started ahead of their tasks ("spares"), waiting on stdin, per runner build.

Starting the runner costs an interpreter start and its imports, tens of milliseconds of CPU
on a fast machine and more on a small target, and with many targets of one task on one
machine it is what a fan-out waits for. So the runner host keeps ``size`` runners per build
already started; a task takes one and only writes its request. A spare is started exactly
as a task's runner (the same ``spawn``: argv and ``-I -S``, environment, own session,
parent-death signal), except that its working directory is ``/``: the task's work dir does
not exist yet, and the runner moves into the ``work_dir`` of its request itself.

Spares are (re)started when the agent process is quiet (:mod:`octo_appliance.agent.quiet`),
not the moment a task ends, so their CPU never competes with the work that follows. A spare
whose build file changed since it started (a new build at the same path) is not used; one
that exits while idle is replaced, but not after :data:`IDLE_DEATHS` in a row (something
kills them: starting more would only loop). Idle spares hold no script, so
:meth:`SparePool.close` kills them outright. Only the build used last keeps spares.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octo_appliance.agent.quiet import activity

log = logging.getLogger("octo_appliance.agent.runner")

#: the working directory of a runner started before its task is known
SPARE_CWD = Path("/")
#: spares that exited while idle, in a row, after which no more are started until a task
#: has taken one (or started one of its own)
IDLE_DEATHS = 3

Process = asyncio.subprocess.Process
Spawn = Callable[[Path, Path], Awaitable[Process]]
Stamp = tuple[int, int, int, int]


@dataclass(eq=False)
class Spare:
    """One runner being started, or started and idle, for the build at ``pyz``."""

    pyz: Path
    stamp: Stamp
    starting: asyncio.Task[Process]
    watch: asyncio.Task[None] | None = field(default=None)


class SparePool:
    """The spares of one runner host: :meth:`take` one, :meth:`refill` later."""

    def __init__(self, spawn: Spawn, size: int = 1) -> None:
        self._spawn = spawn
        self.size = size
        self._spares: dict[Path, list[Spare]] = {}
        self._idle_deaths = 0
        self._background: set[asyncio.Task[None]] = set()
        self.closed = False

    def __len__(self) -> int:
        """Spares starting or started."""
        return sum(len(spares) for spares in self._spares.values())

    def pids(self) -> list[int]:
        """The process ids of the spares started so far (some may be exiting)."""
        return [
            spare.starting.result().pid
            for spares in self._spares.values()
            for spare in spares
            if _started_ok(spare.starting)
        ]

    async def take(self, pyz: Path) -> Process | None:
        """A spare for ``pyz``, now the caller's (waiting for it if it is still starting);
        ``None`` when there is none, it died, or the build changed since it started."""
        spares = self._spares.get(pyz)
        if not spares:
            return None
        # one that has started, else the one that began starting first
        spare = next((s for s in spares if s.starting.done()), spares[0])
        spares.remove(spare)
        if spare.watch is not None:
            spare.watch.cancel()
        if _stamp(pyz) != spare.stamp:
            log.info("the runner build %s changed; its spares are discarded", pyz.name)
            for stale in [spare, *self._spares.pop(pyz, [])]:
                self._in_background(self._discard(stale))
            return None
        try:
            if not spare.starting.done():
                await asyncio.wait([spare.starting])
        except asyncio.CancelledError:
            self._in_background(self._discard(spare))
            raise
        if not _started_ok(spare.starting):
            return None
        process = spare.starting.result()
        if process.returncode is not None or _exited(process.pid):
            self._in_background(self._discard(spare))
            return None
        self._idle_deaths = 0
        return process

    def refill_when_quiet(self, pyz: Path) -> None:
        """:meth:`refill` once the agent process has been without tasks for a moment."""
        if not self.closed:
            activity().when_quiet(self, lambda: self.refill(pyz))

    def refill(self, pyz: Path) -> None:
        """Start spares for ``pyz`` in the background, up to ``size``."""
        if self.closed or self._idle_deaths >= IDLE_DEATHS:
            return
        stamp = _stamp(pyz)
        if stamp is None:
            return
        for other in [p for p in self._spares if p != pyz]:  # one build in use at a time
            for stale in self._spares.pop(other):
                self._in_background(self._discard(stale))
        spares = self._spares.setdefault(pyz, [])
        while len(spares) < self.size:
            spare = Spare(pyz, stamp, asyncio.get_running_loop().create_task(self._start(pyz)))
            spares.append(spare)
            spare.starting.add_done_callback(functools.partial(self._started, spare))

    def forgive(self) -> None:
        """A task started a runner of its own: spares that died idle may be tried again."""
        self._idle_deaths = 0

    async def close(self) -> None:
        """Kill every spare (the host stops) and start no more."""
        self.closed = True
        activity().cancel(self)
        spares = [spare for spares in self._spares.values() for spare in spares]
        self._spares.clear()
        pending = [*(self._discard(spare) for spare in spares), *self._background]
        await asyncio.gather(*pending, return_exceptions=True)

    # -- internals -----------------------------------------------------------------------

    async def _start(self, pyz: Path) -> Process:
        try:
            return await self._spawn(pyz, SPARE_CWD)
        except Exception as exc:
            log.warning("cannot start a runner ahead of its task: %s", exc)
            raise

    def _listed(self, spare: Spare) -> bool:
        return spare in self._spares.get(spare.pyz, [])

    def _started(self, spare: Spare, _: object = None) -> None:
        """Watch a spare that started and is still in the pool, to replace it if it exits."""
        if not self._listed(spare):
            return
        if not _started_ok(spare.starting):
            self._spares[spare.pyz].remove(spare)
            self._idle_deaths += 1
            return
        process = spare.starting.result()
        spare.watch = asyncio.get_running_loop().create_task(self._watch(spare, process))

    async def _watch(self, spare: Spare, process: Process) -> None:
        code = await process.wait()
        if not self._listed(spare):
            return
        self._spares[spare.pyz].remove(spare)
        self._idle_deaths += 1
        log.warning(
            "a runner started ahead of its task (pid %d) exited while idle (exit code %d)%s",
            process.pid,
            code,
            "; starting another" if self._idle_deaths < IDLE_DEATHS else "; no more ahead",
        )
        self.refill_when_quiet(spare.pyz)

    async def _discard(self, spare: Spare) -> None:
        if spare.watch is not None:
            spare.watch.cancel()
        await asyncio.wait([spare.starting])
        if not _started_ok(spare.starting):
            return
        process = spare.starting.result()
        if process.returncode is None:
            # idle, so it started nothing: its process group is itself
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _started_ok(starting: asyncio.Task[Process]) -> bool:
    """Whether a finished start gave a process (its exception, if any, is retrieved)."""
    return starting.done() and not starting.cancelled() and starting.exception() is None


def _exited(pid: int) -> bool:
    """Whether the child ``pid`` has ended, even if the event loop has not been told yet
    (``WNOWAIT``: the child watcher still reaps it)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped: its return code is on its way
        return True


def _stamp(path: Path) -> Stamp | None:
    """What tells that the build file is still the one a spare was started from."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
