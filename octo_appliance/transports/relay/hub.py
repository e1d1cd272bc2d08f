"""The polling hub of a node among several: a call for an agent connected elsewhere is relayed.

It replaces the agent network's :class:`~octo_appliance.comms.PollingHub` when the appliance
runs on PostgreSQL, so every caller of ``hub.call`` (the polling transport, the update
coordinator) reaches agents on any node without knowing it. A call goes down this node's own
connection when the agent is connected here, else to the node that holds the agent's
connection; an agent connected nowhere is waited for (up to the pickup timeout) on every
node at once: the call goes wherever it connects first. Connections are recorded for the
other nodes as they open and close.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from octo_appliance.comms import Connection, PollingHub, Response
from octo_appliance.comms.errors import PickupTimeout
from octo_appliance.transports.relay.node import CallRelay
from octo_appliance.transports.relay.wire import NotPickedUp

#: an agent connected nowhere is looked for again at least this often
LOOK_AGAIN_SECONDS = 1.0


class RelayingHub(PollingHub):
    def __init__(self) -> None:
        super().__init__()
        self.relay: CallRelay | None = None
        self._arrived: dict[str, asyncio.Event] = {}

    def local_call(self, agent_id: str, method: str, params: dict[str, Any], **kwargs: Any) -> Any:
        """A call on this node's own connection (what the relay runs for another node)."""
        return PollingHub.call(self, agent_id, method, params, **kwargs)

    def attach(self, conn: Connection, agent_id: str | None = None) -> None:
        super().attach(conn, agent_id)
        key = agent_id or conn.peer_thumbprint
        arrived = self._arrived.get(key)
        if arrived is not None:
            arrived.set()
        if self.relay is not None:
            self.relay.agent_connected(key)
            conn.add_close_callback(functools.partial(self._closed, key))

    def _closed(self, key: str, _conn: Connection) -> None:
        if self.relay is not None and not self.is_connected(key):
            self.relay.agent_disconnected(key)

    async def call(  # type: ignore[override]
        self,
        agent_id: str,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        pickup_timeout: float = 120.0,
        **kwargs: Any,
    ) -> Response:
        """As :meth:`PollingHub.call` (``kwargs``: its ``on_event``, ``upload``,
        ``download_dir`` and ``timeout``), from whichever node holds the agent's connection."""
        relay = self.relay
        if relay is None:
            return await super().call(
                agent_id, method, params, pickup_timeout=pickup_timeout, **kwargs
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + pickup_timeout
        while True:
            remaining = deadline - loop.time()
            if self.is_connected(agent_id):
                return await super().call(
                    agent_id, method, params, pickup_timeout=max(remaining, 1.0), **kwargs
                )
            try:  # to the node holding the agent's connection, if one does
                response = await relay.call(
                    None, agent_id, method, params, pickup_timeout=max(remaining, 1.0), **kwargs
                )
            except NotPickedUp:
                continue  # its node died before taking it: wherever the agent is now
            if response is not None:
                return response
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PickupTimeout(
                    f"agent {agent_id} did not pick up the request {method} within "
                    f"{pickup_timeout:g} s (it is connected to no node)",
                    hint="check that the agent is running and can reach a node's polling port",
                )
            await self._wait_arrival(relay, agent_id, min(remaining, LOOK_AGAIN_SECONDS))

    async def _wait_arrival(self, relay: CallRelay, agent_id: str, timeout: float) -> None:
        """Until the agent connects here or anywhere (or ``timeout``)."""
        here = self._arrived.setdefault(agent_id, asyncio.Event())
        waits = [
            asyncio.ensure_future(here.wait()),
            asyncio.ensure_future(relay.wait_for_agent(agent_id, timeout)),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            if here.is_set() and self._arrived.get(agent_id) is here:
                del self._arrived[agent_id]
