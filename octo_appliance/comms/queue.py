"""Requests for polling agents: a per-agent queue behind an interface, and the hub that
hands queued requests to agents' open connections.

A request is *picked up* when the hub hands it to a live connection of its agent: at once if
the agent is connected (no poll interval), else as soon as it connects. Until then it waits in
the agent's queue; cancelling the call, or the pickup timeout, withdraws it. After pickup,
cancelling sends CANCEL and the agent's handler is cancelled; if the connection dies the call
fails with PeerLost. If the connection closes before the request was written
(:class:`ConnectionClosed`), it goes back into the queue for the agent's next connection.

The queue holds plain, JSON-able descriptions so that a shared implementation (PostgreSQL
LISTEN/NOTIFY, several appliance nodes) can replace :class:`InMemoryRequestQueue` without
touching the hub's callers; see docs/protocol.md for what such a queue must also carry.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from octo_appliance.comms.call_types import EventCallback, Response
from octo_appliance.comms.connection import Connection
from octo_appliance.comms.errors import ConnectionClosed, PickupTimeout
from octo_appliance.comms.transfer import UploadSource

log = logging.getLogger("octo_appliance.comms")


@dataclass(frozen=True)
class QueuedRequest:
    request_id: str
    agent_id: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    enqueued_at: float = field(default_factory=time.time)


class RequestQueue(Protocol):
    """Per-agent FIFO of requests waiting for pickup."""

    async def put(self, item: QueuedRequest) -> None:
        """Append ``item`` to its agent's queue."""

    async def take(self, agent_id: str) -> QueuedRequest:
        """Wait for and claim the oldest request for ``agent_id`` (claimed once, by one taker).

        Must be cancel-safe: a cancelled ``take`` claims nothing.
        """

    async def withdraw(self, request_id: str) -> bool:
        """Remove a request not yet taken; False when it was already taken (or unknown)."""

    async def depth(self, agent_id: str) -> int:
        """How many requests wait for ``agent_id``."""


class InMemoryRequestQueue:
    """The single-node queue: a deque per agent with requests waiting, and the waiters of
    the agents waiting for one. An agent with neither has no entry: thousands of idle
    polling connections keep no empty deque (~600 bytes each) or list (issue 14)."""

    def __init__(self) -> None:
        self._items: dict[str, deque[QueuedRequest]] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        """Agents with requests waiting or waiting for one (what this queue holds state for)."""
        return len(self._items.keys() | self._waiters.keys())

    async def put(self, item: QueuedRequest) -> None:
        self._items.setdefault(item.agent_id, deque()).append(item)
        for waiter in self._waiters.pop(item.agent_id, []):
            if not waiter.done():
                waiter.set_result(None)

    async def take(self, agent_id: str) -> QueuedRequest:
        while not self._items.get(agent_id):
            waiter = asyncio.get_running_loop().create_future()
            waiters = self._waiters.setdefault(agent_id, [])
            waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters and self._waiters.get(agent_id) is waiters:
                    del self._waiters[agent_id]
        items = self._items[agent_id]
        item = items.popleft()
        if not items:
            del self._items[agent_id]
        return item

    async def withdraw(self, request_id: str) -> bool:
        for agent_id, items in self._items.items():
            for item in items:
                if item.request_id == request_id:
                    items.remove(item)
                    if not items:
                        del self._items[agent_id]
                    return True
        return False

    async def depth(self, agent_id: str) -> int:
        return len(self._items.get(agent_id, ()))


class PollingHub:
    """Connected polling agents by id, and calls to them through the queue."""

    def __init__(self, queue: RequestQueue | None = None) -> None:
        self.queue: RequestQueue = queue or InMemoryRequestQueue()
        self._connections: dict[str, Connection] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._waiting: dict[str, asyncio.Future[Connection]] = {}

    def attach(self, conn: Connection, agent_id: str | None = None) -> None:
        """Route ``agent_id``'s requests (default: its certificate thumbprint, which TLS
        proved, unlike the id it claims in HELLO) to ``conn``; a newer connection of the same
        agent takes over, the older one lives on until its calls end or it dies."""
        key = agent_id or conn.peer_thumbprint
        if key in self._connections:
            log.warning("agent %s connected again; routing new requests to the new connection", key)
            self._stop_pump(key)
        self._connections[key] = conn
        self._pumps[key] = asyncio.get_running_loop().create_task(self._pump(key, conn))
        conn.add_close_callback(lambda closed: self._detach(key, closed))

    def is_connected(self, agent_id: str) -> bool:
        conn = self._connections.get(agent_id)
        return conn is not None and conn.accepts_calls

    @property
    def connected_agents(self) -> list[str]:
        return [key for key, conn in self._connections.items() if conn.accepts_calls]

    async def close(self) -> None:
        """Stop the pumps (connections are the listener's to close)."""
        pumps = list(self._pumps.values())
        for key in list(self._pumps):
            self._stop_pump(key)
        await asyncio.gather(*pumps, return_exceptions=True)

    async def call(
        self,
        agent_id: str,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        pickup_timeout: float = 120.0,
        on_event: EventCallback | None = None,
        upload: UploadSource | None = None,
        download_dir: str | Path | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Call ``method`` on polling agent ``agent_id`` once it picks the request up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + pickup_timeout
        while True:
            conn = await self._pick_up(agent_id, method, params or {}, deadline, pickup_timeout)
            try:
                return await conn.call(
                    method,
                    params,
                    on_event=on_event,
                    upload=upload,
                    download_dir=download_dir,
                    timeout=timeout,
                )
            except ConnectionClosed:
                log.info(
                    "connection to agent %s closed before %s was sent; queueing it again",
                    agent_id,
                    method,
                )

    async def _pick_up(
        self,
        agent_id: str,
        method: str,
        params: dict[str, Any],
        deadline: float,
        pickup_timeout: float,
    ) -> Connection:
        item = QueuedRequest(uuid.uuid4().hex, agent_id, method, params)
        picked: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._waiting[item.request_id] = picked
        try:
            await self.queue.put(item)
            try:
                async with asyncio.timeout_at(deadline):
                    return await asyncio.shield(picked)
            except TimeoutError:
                if await self.queue.withdraw(item.request_id) or not picked.done():
                    raise PickupTimeout(
                        f"agent {agent_id} did not pick up the request {method} within "
                        f"{pickup_timeout:g} s",
                        hint="check that the agent is running and can reach the appliance's "
                        "polling port",
                    ) from None
                return picked.result()  # handed over just as the timeout fired
            except asyncio.CancelledError:
                await asyncio.shield(self.queue.withdraw(item.request_id))
                raise
        finally:
            self._waiting.pop(item.request_id, None)
            if not picked.done():
                picked.cancel()

    async def _pump(self, agent_id: str, conn: Connection) -> None:
        """Hand each request queued for ``agent_id`` to ``conn`` the moment it is queued."""
        while True:
            item = await self.queue.take(agent_id)
            if not conn.accepts_calls:  # it said GOAWAY: keep the request for the next one
                await self.queue.put(item)
                if self._connections.get(agent_id) is conn:
                    del self._connections[agent_id]
                    self._pumps.pop(agent_id, None)
                return
            picked = self._waiting.get(item.request_id)
            if picked is not None and not picked.done():
                picked.set_result(conn)

    def _stop_pump(self, key: str) -> None:
        pump = self._pumps.pop(key, None)
        if pump is not None:
            pump.cancel()

    def _detach(self, key: str, conn: Connection) -> None:
        if self._connections.get(key) is conn:
            del self._connections[key]
            self._stop_pump(key)
