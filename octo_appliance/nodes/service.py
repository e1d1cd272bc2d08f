"""This node's membership: registered at start, heartbeat, fencing, and the reaper of others.

One :class:`NodeService` per ``serve`` process, started before the task engine (a refused
registration stops the start before any task is touched). Every ``heartbeat`` seconds it:

1. refreshes this node's heartbeat. If the row says the node was declared dead (or a later
   start of its name took over), the node *fences* itself: every task it runs is stopped at
   once, and it registers again under a new generation. If the heartbeat cannot be stored
   for ``dead_after`` seconds (counted from when the last stored one was sent, so before any
   other node can count that long), it fences itself too: another node may have declared it
   dead meanwhile, and a task must never run on two nodes;
2. declares dead every other node whose heartbeat is older than ``dead_after``, failing its
   executing tasks naming it, then mirrors those ends onto their deployments (redeployable, as
   after a restart).

The lease the task engine asks before each claim is :meth:`NodeService.lease`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import peewee

from octo_appliance.engine.deployments import reconcile
from octo_appliance.engine.tasks import TaskEngine
from octo_appliance.exceptions import OctoError
from octo_appliance.nodes import registry
from octo_appliance.nodes.registry import NodeInfo
from octo_appliance.vault import Vault

log = logging.getLogger("octo_appliance.nodes")
T = TypeVar("T")


class NodeService:
    def __init__(
        self,
        db: peewee.Database,
        vault: Vault,
        info: NodeInfo,
        *,
        dead_after: float,
        heartbeat: float,
    ) -> None:
        self.db, self.vault, self.info = db, vault, info
        self.dead_after, self.interval = dead_after, heartbeat
        #: only a shared database (PostgreSQL) has other nodes that could take over: on SQLite
        #: a heartbeat that cannot be stored in time (a long lock) stops no task
        self.shared = isinstance(db, peewee.PostgresqlDatabase)
        self.generation = 0
        self.draining = False
        self.missing_plugins: list[str] = []
        self.engine: TaskEngine | None = None
        #: monotonic time the last heartbeat that was stored was sent
        self._last_ok = 0.0
        self._fenced = False
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.info.name

    async def _db(self, call: Callable[[], T]) -> T:
        return await asyncio.to_thread(call)

    async def register(self) -> None:
        """Register (raises ConfigError when refused); say which plugins it lacks."""
        sent = time.monotonic()
        done = await self._db(
            functools.partial(registry.register, self.db, self.vault, self.info, self.dead_after)
        )
        self.generation, self.draining = done.generation, done.draining
        self.missing_plugins = done.missing_plugins
        self._last_ok, self._fenced = sent, False
        if done.missing_plugins:
            log.warning(
                "node %s lacks plugin(s) another live node loaded: %s; install the same "
                "plugins on every node",
                self.name,
                ", ".join(done.missing_plugins),
            )
        if self.draining:
            log.warning("node %s is draining: it takes no new tasks (node undrain)", self.name)

    def start(self, engine: TaskEngine) -> None:
        self.engine = engine
        self._loop_task = asyncio.create_task(self._run(), name="octo-node-heartbeat")

    def lease(self) -> bool:
        """May this node claim tasks now? Asked inside the claim's transaction (thread)."""
        if self._fenced or (self.shared and time.monotonic() - self._last_ok >= self.dead_after):
            return False
        return registry.holds_lease(self.db, self.name, self.generation, self.dead_after)

    async def stop(self, reason: str = "stopped") -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._db(
                functools.partial(
                    registry.mark_stopped, self.db, self.name, self.generation, reason
                )
            )

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._guarded(self._beat(), "storing this node's heartbeat")
            await self._guarded(self._reap(), "looking for dead nodes")

    async def _guarded(self, work: Awaitable[Any], what: str) -> None:
        try:
            await work
        except OctoError as exc:  # the database is down: logged once by it
            log.debug("%s failed: %s", what, exc.message)
        except Exception as exc:
            log.error("%s failed (retrying): %s", what, exc)
        finally:
            self._check_lease_age()

    def _check_lease_age(self) -> None:
        age = time.monotonic() - self._last_ok
        if self.shared and not self._fenced and age >= self.dead_after:
            self._fence(
                f"appliance node '{self.name}' could not store its heartbeat for {age:.0f} s "
                "and stopped this task (another node may have declared it dead); re-run it"
            )

    def _fence(self, reason: str) -> None:
        self._fenced = True
        log.error("node %s: %s", self.name, reason)
        if self.engine is not None:
            self.engine.fence(reason)

    async def _beat(self) -> None:
        sent = time.monotonic()
        running = self.engine.running_count if self.engine is not None else 0
        beat = await self._db(
            functools.partial(registry.heartbeat, self.db, self.name, self.generation, running)
        )
        if beat is None:
            self._fence(
                f"appliance node '{self.name}' was declared dead by another node while this "
                "task ran on it, and stopped it; re-run it"
            )
            await self.register()  # a new generation: it may take tasks again
            return
        self._last_ok = max(self._last_ok, sent)
        self._fenced = False
        if beat.draining != self.draining:
            self.draining = beat.draining
            log.info("node %s %s", self.name, "drains" if beat.draining else "takes tasks again")
        if not beat.draining and self.engine is not None:
            self.engine.wake()

    async def _reap(self) -> None:
        reaped = await self._db(
            functools.partial(registry.reap, self.db, self.vault, self.dead_after, self.name)
        )
        for name, task_ids in reaped.items():
            log.warning(
                "node %s declared node %s dead (no heartbeat for %.0f s); failed its %d "
                "executing task(s)",
                self.name,
                name,
                self.dead_after,
                len(task_ids),
            )
        if any(reaped.values()):
            await self._db(reconcile)
