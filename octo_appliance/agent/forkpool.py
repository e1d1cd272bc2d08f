"""The fork server a runner host keeps for the build it used last, started when quiet.

A task whose host has a ready fork server for its build gets a forked runner (~10 ms of CPU);
otherwise it starts a runner directly, as without fork servers, and the server for that
build is started once the agent process is quiet (:mod:`octo_appliance.agent.quiet`): its
own start (an interpreter and every command's imports) never competes with the work. A task
that arrives while the server is starting waits for it: that is sooner than a start of its
own. A server whose build file changed since it started (a new build at the same path) is
not used again and is replaced; it ends once the runners it forked have ended (they would
be cancelled with it); one that dies is replaced, but not after :data:`IDLE_DEATHS`
deaths in a row (something kills them: starting more would only loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from octo_appliance.agent.forkserver import ForkedRunner, ForkServer, ForkServerGone
from octo_appliance.agent.quiet import activity

log = logging.getLogger("octo_appliance.agent.runner")

#: fork servers that ended unasked, in a row, after which no more are started until a task
#: has started a runner of its own
IDLE_DEATHS = 3

Start = Callable[[Path], Awaitable[ForkServer]]
Stamp = tuple[int, int, int, int]


@dataclass(eq=False)
class Entry:
    """The fork server of one build: starting, or started."""

    pyz: Path
    stamp: Stamp
    starting: asyncio.Task[ForkServer]


class ForkPool:
    """At most one fork server, for the build used last: :meth:`fork`, :meth:`refill`."""

    def __init__(self, start: Start) -> None:
        self._start = start
        self._entry: Entry | None = None
        self._deaths = 0
        self._background: set[asyncio.Task[None]] = set()
        self.closed = False

    @property
    def server(self) -> ForkServer | None:
        """The started server, if there is one and it is alive."""
        entry = self._entry
        if entry is None or not _started_ok(entry.starting):
            return None
        server = entry.starting.result()
        return None if server.gone else server

    async def fork(self, pyz: Path, limit: int) -> ForkedRunner | None:
        """A runner forked for ``pyz``; ``None`` when there is no server for it (the caller
        starts one directly)."""
        entry = self._entry
        if entry is None or entry.pyz != pyz:
            return None
        if _stamp(pyz) != entry.stamp:
            log.info("the runner build %s changed; its fork server is replaced", pyz.name)
            self._drop()
            return None
        if not entry.starting.done():
            await asyncio.wait([entry.starting])
        if not _started_ok(entry.starting):
            self._drop()
            return None
        server = entry.starting.result()
        if server.gone:
            self._died()
            return None
        try:
            runner = await server.fork(limit)
        except ForkServerGone as exc:
            log.warning("the runner fork server (pid %d) is gone: %s", server.pid, exc)
            self._died()
            return None
        self._deaths = 0
        return runner

    def refill_when_quiet(self, pyz: Path) -> None:
        """:meth:`refill` once the agent process has been without tasks for a moment."""
        if not self.closed:
            activity().when_quiet(self, lambda: self.refill(pyz))

    def refill(self, pyz: Path) -> None:
        """Start the fork server for ``pyz`` in the background, unless it is there."""
        if self.closed or self._deaths >= IDLE_DEATHS:
            return
        stamp = _stamp(pyz)
        if stamp is None:
            return
        entry = self._entry
        if entry is not None:
            alive = not entry.starting.done() or self.server is not None
            if entry.pyz == pyz and entry.stamp == stamp and alive:
                return
            if not alive and _started_ok(entry.starting):  # it ended unasked
                self._deaths += 1
                if self._deaths >= IDLE_DEATHS:
                    self._drop()
                    return
            self._drop()
        starting = asyncio.get_running_loop().create_task(self._started(pyz))
        self._entry = Entry(pyz, stamp, starting)

    def forgive(self) -> None:
        """A task started a runner of its own: a server that died may be tried again."""
        self._deaths = 0

    async def close(self) -> None:
        """End the server (the host stops, its runners were stopped) and start no more."""
        self.closed = True
        activity().cancel(self)
        self._drop(now=True)
        await asyncio.gather(*self._background, return_exceptions=True)

    # -- internals -----------------------------------------------------------------------

    async def _started(self, pyz: Path) -> ForkServer:
        try:
            server = await self._start(pyz)
        except Exception as exc:
            log.warning("cannot start a runner fork server: %s", exc)
            self._deaths += 1
            raise
        log.info("runner fork server started (pid %d) for %s", server.pid, pyz.name)
        return server

    def _died(self) -> None:
        """The server ended unasked: count it and start another when quiet."""
        entry = self._entry
        self._drop()
        self._deaths += 1
        if entry is not None:
            self.refill_when_quiet(entry.pyz)

    def _drop(self, now: bool = False) -> None:
        """Forget the current server and end it in the background: once the runners it
        forked have ended (they would be cancelled with it), or ``now``."""
        entry, self._entry = self._entry, None
        if entry is None:
            return
        task = asyncio.get_running_loop().create_task(_end(entry, now))
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _end(entry: Entry, now: bool) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.wait([entry.starting])
    if _started_ok(entry.starting):
        server = entry.starting.result()
        await (server.close() if now else server.retire())


def _started_ok(starting: asyncio.Task[ForkServer]) -> bool:
    """Whether a finished start gave a server (its exception, if any, is retrieved)."""
    return starting.done() and not starting.cancelled() and starting.exception() is None


def _stamp(path: Path) -> Stamp | None:
    """What tells that the build file is still the one a server was started from."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
