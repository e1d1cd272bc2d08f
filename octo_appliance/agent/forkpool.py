"""A runner host's use of the process's fork servers: the one of the build it used last.

A task whose build has a ready fork server (:mod:`octo_appliance.agent.forkshare`: one per
build and start command in the agent process, shared by its identities) gets a forked runner
(~10 ms of CPU); otherwise it starts a runner directly, as without fork servers, and the
server for that build is started once the agent process is quiet
(:mod:`octo_appliance.agent.quiet`): its own start (an interpreter and every command's
imports) never competes with the work. A task that arrives while the server is starting
waits for it: that is sooner than a start of its own. A host whose first task of a build
comes when another host already has that build's server uses it at once. A server whose
build file changed since it started is not used again and is replaced; one that dies is
replaced, but not after :data:`~octo_appliance.agent.forkshare.IDLE_DEATHS` deaths in a row
(something kills them: starting more would only loop). A host that closes leaves its server
to the other hosts using it; the last one's closing ends it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from octo_appliance.agent.forkserver import ForkedRunner, ForkServer, ForkServerGone
from octo_appliance.agent.forkshare import Command, Key, Shared, fork_servers
from octo_appliance.agent.quiet import activity

log = logging.getLogger("octo_appliance.agent.runner")

#: the host's :meth:`~octo_appliance.agent.runner_host.RunnerHost.runner_command`
CommandOf = Callable[[Path], Command]


class ForkPool:
    """One host's fork server, shared with the hosts of the same build and start command:
    :meth:`fork`, :meth:`refill`, :meth:`close`."""

    def __init__(self, command: CommandOf) -> None:
        self._command = command
        self._entry: Shared | None = None
        #: the key of the build last asked for (what :meth:`forgive` forgives)
        self._key: Key | None = None
        self.closed = False

    @property
    def server(self) -> ForkServer | None:
        """The started server of the build this host used last, if it is alive."""
        return None if self._entry is None else self._entry.server

    async def fork(self, pyz: Path, limit: int) -> ForkedRunner | None:
        """A runner forked for ``pyz``; ``None`` when there is no server for it (the caller
        starts one directly)."""
        if self.closed:
            return None
        servers = fork_servers()
        key = self._key = servers.key(self._command(pyz), pyz)
        if key is None:
            return None
        entry = servers.lookup(key)
        if entry is None:
            return None
        self._use(entry)
        if not entry.starting.done():
            await asyncio.wait([entry.starting])
            if servers.lookup(key) is not entry:  # it failed to start, or ended meanwhile
                return None
        server = entry.server
        if server is None:
            servers.died(entry)
            return None
        try:
            runner = await server.fork(limit)
        except ForkServerGone as exc:
            log.warning("the runner fork server (pid %d) is gone: %s", server.pid, exc)
            servers.died(entry)
            return None
        servers.succeeded(key)
        return runner

    def refill_when_quiet(self, pyz: Path) -> None:
        """:meth:`refill` once the agent process has been without tasks for a moment."""
        if not self.closed:
            activity().when_quiet(self, lambda: self.refill(pyz))

    def refill(self, pyz: Path) -> None:
        """Use the fork server for ``pyz``, started in the background unless it is there."""
        if self.closed:
            return
        servers = fork_servers()
        argv, env, options = command = self._command(pyz)
        key = servers.key(command, pyz)
        if key is None:
            return
        entry = servers.acquire(key, pyz, lambda: ForkServer.start(argv, env, options))
        if entry is None:
            self._leave()
        else:
            self._use(entry)

    def forgive(self) -> None:
        """A task started a runner of its own: a server that died may be tried again."""
        if self._key is not None:
            fork_servers().succeeded(self._key)

    async def close(self) -> None:
        """Use no server any more (the host stops, its runners were stopped): the server
        ends if no other host uses it, now unless another host's runner forked from it
        still runs."""
        self.closed = True
        activity().cancel(self)
        entry = self._entry
        ending = self._leave()
        if ending is not None and (entry is None or entry.server is None or not entry.server.busy):
            await ending

    # -- internals -----------------------------------------------------------------------

    def _use(self, entry: Shared) -> None:
        if self._entry is not entry:
            self._leave()
            entry.users.add(self)
            self._entry = entry

    def _leave(self) -> asyncio.Task[None] | None:
        entry, self._entry = self._entry, None
        return None if entry is None else fork_servers().release(entry, self)
