"""This node's part of the relay: who it is, which agents it holds, and the notifications.

:class:`CallRelay` is one per node process (PostgreSQL only). It registers the node under an
id new at every start and heartbeats it; records each polling agent that connects here and
forgets it when the connection ends; and dispatches the notifications every node listens to:
calls handed to this node (:mod:`.serving`), progress of calls this node handed away
(:mod:`.requesting`), agents arriving anywhere, and task logs growing (the SSE streams of
``api/task_stream.py`` wake on those). A node whose heartbeat is older than
:data:`~.wire.STALE_SECONDS` no longer counts as holding its agents, and its rows are
purged; its calls not yet taken are routed again, those under way fail naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from octo_appliance.comms import Response, UploadSource
from octo_appliance.comms.call_types import EventCallback
from octo_appliance.transports.relay.batch import Batcher
from octo_appliance.transports.relay.pg import Listener, Pool
from octo_appliance.transports.relay.requesting import (
    NewCall,
    Progress,
    insert_calls,
    read_progress,
    request,
)
from octo_appliance.transports.relay.serving import Server
from octo_appliance.transports.relay.wire import CHANNEL, LOG_CHANNEL, NOW, STALE_SECONDS, Sealer

log = logging.getLogger("octo_appliance.relay")

HEARTBEAT_SECONDS = 5.0
#: rows of nodes silent this long are deleted (their agents' rows with them)
PURGE_SECONDS = 60.0

#: ``local_call(thumbprint, method, params, on_event, upload, download_dir, timeout,
#: pickup_timeout)``: the call on this node's own connection to the agent
LocalCall = Callable[..., Awaitable[Response]]


class LogWatch:
    """One follower of a task's log on this node (an SSE stream)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.noticed = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """True once the log grew since the last wait; False after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self.noticed.wait()
        except TimeoutError:
            return False
        self.noticed.clear()
        return True


class CallRelay:
    def __init__(
        self, url: str, vault: Sealer, label: str, spool: Path, local_call: LocalCall
    ) -> None:
        self.node_id = f"node-{uuid.uuid4().hex}"
        self.label = label[:200]
        self.vault = vault
        self.spool = spool
        self.pool = Pool(url)
        self.listener = Listener(url, (CHANNEL, LOG_CHANNEL), self._notified, self._reconnected)
        self.server = Server(self, local_call)
        #: calls this node handed away: call id -> the queue their notifications go to
        self.waiters: dict[str, asyncio.Queue[str]] = {}
        #: the calls handed away and the progress read in the same moment: one statement
        self.inserts: Batcher[NewCall, str] = Batcher(functools.partial(insert_calls, self))
        self.reads: Batcher[tuple[str, int], Progress] = Batcher(
            functools.partial(read_progress, self)
        )
        self._agent_arrived: dict[str, asyncio.Event] = {}
        self._log_waiters: dict[str, set[LogWatch]] = {}
        self._local_agents: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: run on this node before it makes a call handed to it (``prepare(method, params)``:
        #: e.g. build the plugin bundle the agent will fetch from this node)
        self.prepare: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
        #: called when another node changed targets (agent trust is reloaded from the database)
        self.on_targets_changed: Callable[[], Awaitable[None]] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._register()
        self.listener.start()
        await asyncio.wait_for(self.listener.listening.wait(), 30)
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        log.info("calls across nodes: this node is %s (%s)", self.node_id, self.label)

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await self.server.stop()
        with contextlib.suppress(Exception):
            async with self.pool.connection() as conn:
                await conn.execute('DELETE FROM "relay_node" WHERE "id" = %s', (self.node_id,))
        await self.listener.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.pool.close()

    async def _register(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                f'INSERT INTO "relay_node" ("id", "label", "seen_at") VALUES (%s, %s, {NOW}) '
                'ON CONFLICT ("id") DO UPDATE SET "seen_at" = EXCLUDED."seen_at"',
                (self.node_id, self.label),
            )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._heartbeat_once()
            except Exception as exc:  # the database may be away: try again next beat
                log.warning("relay heartbeat failed: %s", exc)

    async def _heartbeat_once(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f'UPDATE "relay_node" SET "seen_at" = {NOW} WHERE "id" = %s', (self.node_id,)
            )
            purged = cur.rowcount == 0
            await conn.execute(
                f'DELETE FROM "relay_node" WHERE "seen_at" < {NOW} - %s * interval \'1 second\'',
                (PURGE_SECONDS,),
            )
            await conn.execute(
                'DELETE FROM "relay_call" WHERE "origin_node" NOT IN (SELECT "id" FROM '
                '"relay_node")'
            )
        if purged:  # silent too long (the database was away): say again what this node holds
            await self._register()
            for thumbprint in list(self._local_agents):
                await self._record_agent(thumbprint)
        await self.server.sweep()

    # -- targets -------------------------------------------------------------------------------

    def targets_changed(self) -> None:
        """Thread-safe: targets changed on this node; the other nodes reload their trust (an
        agent registered through one node connects to another)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: self.spawn(self._announce_targets()))

    async def _announce_targets(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"* targets {self.node_id}"))

    # -- agents --------------------------------------------------------------------------------

    def agent_connected(self, thumbprint: str) -> None:
        self._local_agents.add(thumbprint)
        self.spawn(self._record_agent(thumbprint))

    def agent_disconnected(self, thumbprint: str) -> None:
        self._local_agents.discard(thumbprint)
        self.spawn(self._forget_agent(thumbprint))

    async def _record_agent(self, thumbprint: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                'INSERT INTO "relay_agent" ("id", "thumbprint", "node_id", "connected_at") '
                f'VALUES (%s, %s, %s, {NOW}) ON CONFLICT ("thumbprint") DO UPDATE SET '
                '"node_id" = EXCLUDED."node_id", "connected_at" = EXCLUDED."connected_at"',
                (f"agent-{uuid.uuid4().hex[:32]}", thumbprint, self.node_id),
            )
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"* agent {thumbprint}"))

    async def _forget_agent(self, thumbprint: str) -> None:
        if thumbprint in self._local_agents:
            return  # it connected again meanwhile
        async with self.pool.connection() as conn:
            await conn.execute(
                'DELETE FROM "relay_agent" WHERE "thumbprint" = %s AND "node_id" = %s',
                (thumbprint, self.node_id),
            )

    async def node_alive(self, node_id: str) -> tuple[bool, str]:
        """Whether ``node_id`` heartbeats, and its label (for messages)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f'SELECT "label", "seen_at" > {NOW} - %s * interval \'1 second\' '
                'FROM "relay_node" WHERE "id" = %s',
                (STALE_SECONDS, node_id),
            )
            row = await cur.fetchone()
        return (bool(row[1]), str(row[0])) if row else (False, node_id)

    async def wait_for_agent(self, thumbprint: str, timeout: float) -> None:
        """Until an agent with this thumbprint connects to some node (or ``timeout``)."""
        event = self._agent_arrived.setdefault(thumbprint, asyncio.Event())
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            if self._agent_arrived.get(thumbprint) is event:
                del self._agent_arrived[thumbprint]

    # -- calls ---------------------------------------------------------------------------------

    async def call(
        self,
        node_id: str | None,
        thumbprint: str,
        method: str,
        params: dict[str, Any] | None,
        *,
        pickup_timeout: float,
        on_event: EventCallback | None = None,
        upload: UploadSource | None = None,
        download_dir: str | Path | None = None,
        timeout: float | None = None,
    ) -> Response | None:
        """Hand the call to node ``node_id``, or (None) to the other live node that holds the
        agent's connection; None when no other node holds it (nothing was sent)."""
        return await request(
            self,
            node_id,
            thumbprint,
            method,
            params or {},
            pickup_timeout=pickup_timeout,
            on_event=on_event,
            upload=upload,
            download_dir=Path(download_dir) if download_dir else self.spool,
            timeout=timeout,
        )

    # -- task logs -----------------------------------------------------------------------------

    def watch_log(self, task_id: str) -> LogWatch:
        """Notice every time the task's log grows (or the task ends) on whichever node runs
        it, from now until :meth:`unwatch_log`."""
        watch = LogWatch(task_id)
        self._log_waiters.setdefault(task_id, set()).add(watch)
        return watch

    def unwatch_log(self, watch: LogWatch) -> None:
        waiters = self._log_waiters.get(watch.task_id)
        if waiters is not None:
            waiters.discard(watch)
            if not waiters:
                del self._log_waiters[watch.task_id]

    # -- notifications -------------------------------------------------------------------------

    def _notified(self, channel: str, payload: str) -> None:
        if channel == LOG_CHANNEL:
            for watch in self._log_waiters.get(payload, ()):
                watch.noticed.set()
            return
        to, _, rest = payload.partition(" ")
        kind, _, subject = rest.partition(" ")
        if to == "*" and kind == "agent":
            arrived = self._agent_arrived.get(subject)
            if arrived is not None:
                arrived.set()
        elif to == "*" and kind == "targets":
            if subject != self.node_id and self.on_targets_changed is not None:
                self.spawn(self.on_targets_changed())
        elif to != self.node_id:
            return
        elif kind in ("call", "cancel"):
            for call_id in subject.split(","):  # a batch of calls names each
                self.server.notified(kind, call_id)
        else:
            for call_id in subject.split(","):
                waiter = self.waiters.get(call_id)
                if waiter is not None:
                    waiter.put_nowait(kind)

    def _reconnected(self) -> None:
        """Notifications were lost while the listener was away: look at everything again."""
        for waiter in self.waiters.values():
            waiter.put_nowait("check")
        for watches in self._log_waiters.values():
            for watch in watches:
                watch.noticed.set()
        for event in self._agent_arrived.values():
            event.set()
        for thumbprint in list(self._local_agents):  # rows of the last moments before a
            self.spawn(self._record_agent(thumbprint))  # PostgreSQL crash may be lost (pg.py)
        self.spawn(self.server.sweep())
        if self.on_targets_changed is not None:
            self.spawn(self.on_targets_changed())

    def spawn(self, work: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.warning("relay bookkeeping failed: %s", exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
