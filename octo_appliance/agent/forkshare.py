"""The runner fork servers of one agent process, shared by all its runner hosts.

An agent process may run many identities (one home and one runner host each; the bench packs
250, a fleet host may run a few). A fork server costs ~18 MB, so one per identity made 5,000
identities on one machine ask for ~90 GB (docs/performance.md, "5,000 polling agents"). A
fork server holds nothing of an identity: a forked runner takes its work dir, cache dir,
applications dir and journal from its request (docs/runner-protocol.md), its stdio from the
pipes sent with the fork request, its line limit is the agent's reader's, and its parent
death is the server's (which ends with the agent process, not with a host). What it does
inherit is the server's start: the build, the environment, the process options (user, group)
and the interpreter's argv. So hosts share a server exactly when those are equal:

- the build by content: its SHA-256, computed once per version of each file (path, device,
  inode, size, mtime), because every identity keeps its own copy of a build in its home;
- the start command apart from the build's path (the built-in worker starts its runners as
  another user with that user's environment: a different command, so a server of its own).

Each host uses the server of the build it ran last. A server no host uses any more (all
moved to another build, or closed) is retired: it forks no more and ends once the runners
it forked have ended (ending it sooner would cancel them: they stop with their parent). A
server whose build file (the copy it was started from) changed is dropped the same way; one
that dies is replaced, but not after :data:`IDLE_DEATHS` deaths in a row (counted per key,
once per death, whichever host notices it). The registry belongs to the event loop (the
agent process has one), like :func:`octo_appliance.agent.quiet.activity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octo_appliance.agent.forkserver import ForkServer
from octo_appliance.agent.loop_local import LoopLocal

log = logging.getLogger("octo_appliance.agent.runner")

#: fork servers of one key that ended unasked, in a row, after which no more are started
#: until a task has started a runner of its own
IDLE_DEATHS = 3
#: bytes hashed at a time
_HASH_CHUNK = 1 << 20

#: how a runner is started: argv, environment, extra ``create_subprocess_exec`` options
Command = tuple[list[str], dict[str, str], dict[str, Any]]
Stamp = tuple[int, int, int, int]
#: the build's SHA-256, the argv with the build's path left out, the environment, the options
Key = tuple[str, tuple[str, ...], tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]
#: what a user of a server is (a host's fork pool); only its identity counts
User = object


@dataclass(eq=False)
class Shared:
    """The fork server of one key: starting, or started; and the hosts using it."""

    key: Key
    #: the copy of the build the server was started from (one host's)
    pyz: Path
    stamp: Stamp
    starting: asyncio.Task[ForkServer]
    users: set[User] = field(default_factory=set)

    @property
    def server(self) -> ForkServer | None:
        """The started server, if it started and has not ended."""
        if not started_ok(self.starting):
            return None
        server = self.starting.result()
        return None if server.gone else server


class ForkServers:
    """The fork servers of one event loop, by :data:`Key`."""

    def __init__(self) -> None:
        self._entries: dict[Key, Shared] = {}
        self._deaths: dict[Key, int] = {}
        self._digests: dict[Path, tuple[Stamp, str]] = {}
        self._ending: set[asyncio.Task[None]] = set()

    def key(self, command: Command, pyz: Path) -> Key | None:
        """The key of a server started with ``command`` for ``pyz``; ``None`` when the build
        cannot be read."""
        stamp = file_stamp(pyz)
        if stamp is None:
            return None
        digest = self._digest(pyz, stamp)
        if digest is None:
            return None
        argv, env, options = command
        where = str(pyz)
        return (
            digest,
            tuple("{build}" if arg == where else arg for arg in argv),
            tuple(sorted(env.items())),
            tuple(sorted((name, repr(value)) for name, value in options.items())),
        )

    def lookup(self, key: Key) -> Shared | None:
        """The server of ``key`` if it may be used (starting, or alive and started from a
        build file that did not change); a dead or outdated one is dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if file_stamp(entry.pyz) != entry.stamp:
            log.info("the runner build %s changed; its fork server is replaced", entry.pyz.name)
            self._drop(entry)
            return None
        if entry.starting.done():
            if not started_ok(entry.starting):  # its death was counted when it failed
                self._drop(entry)
                return None
            if entry.starting.result().gone:
                self.died(entry)
                return None
        return entry

    def acquire(
        self, key: Key, pyz: Path, start: Callable[[], Awaitable[ForkServer]]
    ) -> Shared | None:
        """The server of ``key``, started (in the background) if there is none; ``None``
        after :data:`IDLE_DEATHS` deaths in a row, or when ``pyz`` cannot be read."""
        entry = self.lookup(key)
        if entry is not None:
            return entry
        stamp = file_stamp(pyz)
        if stamp is None or self._deaths.get(key, 0) >= IDLE_DEATHS:
            return None
        starting = asyncio.get_running_loop().create_task(self._started(key, pyz, start))
        entry = self._entries[key] = Shared(key, pyz, stamp, starting)
        return entry

    def died(self, entry: Shared) -> None:
        """``entry``'s server ended unasked: count it (once) and forget it."""
        if self._entries.get(entry.key) is entry:
            self._deaths[entry.key] = self._deaths.get(entry.key, 0) + 1
            self._drop(entry)

    def succeeded(self, key: Key) -> None:
        """A runner was forked, or a task started one of its own: a server of ``key`` that
        died may be tried again."""
        self._deaths.pop(key, None)

    def release(self, entry: Shared, user: User) -> asyncio.Task[None] | None:
        """``user`` no longer uses ``entry``: the last user's leaving retires the server;
        the task that ends it then."""
        entry.users.discard(user)
        if entry.users or self._entries.get(entry.key) is not entry:
            return None
        return self._drop(entry)

    # -- internals -----------------------------------------------------------------------

    async def _started(
        self, key: Key, pyz: Path, start: Callable[[], Awaitable[ForkServer]]
    ) -> ForkServer:
        try:
            server = await start()
        except Exception as exc:
            log.warning("cannot start a runner fork server: %s", exc)
            self._deaths[key] = self._deaths.get(key, 0) + 1
            raise
        log.info("runner fork server started (pid %d) for %s", server.pid, pyz.name)
        return server

    def _drop(self, entry: Shared) -> asyncio.Task[None]:
        """Forget ``entry`` and end its server in the background, once the runners it
        forked have ended."""
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        task = asyncio.get_running_loop().create_task(_end(entry))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)
        return task

    def _digest(self, pyz: Path, stamp: Stamp) -> str | None:
        """The build's SHA-256, hashed once per version of the file (a build is a few
        hundred KB: well under a millisecond, so it is hashed in the loop)."""
        known = self._digests.get(pyz)
        if known is not None and known[0] == stamp:
            return known[1]
        digest = hashlib.sha256()
        try:
            with pyz.open("rb") as file:
                while chunk := file.read(_HASH_CHUNK):
                    digest.update(chunk)
        except OSError:
            return None
        self._digests[pyz] = (stamp, digest.hexdigest())
        return digest.hexdigest()


async def _end(entry: Shared) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.wait([entry.starting])
    if started_ok(entry.starting):
        await entry.starting.result().retire()


def started_ok(starting: asyncio.Task[ForkServer]) -> bool:
    """Whether a finished start gave a server (its exception, if any, is retrieved)."""
    return starting.done() and not starting.cancelled() and starting.exception() is None


def file_stamp(path: Path) -> Stamp | None:
    """What tells that a build file is still the one a server was started from."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


_SERVERS = LoopLocal(ForkServers)


def fork_servers() -> ForkServers:
    """The fork servers of the running event loop (the agent process has one)."""
    return _SERVERS.get()
