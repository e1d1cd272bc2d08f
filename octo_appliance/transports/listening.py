"""Listening agents: the agent serves mutual TLS; the appliance dials it and keeps the
connection for later calls (Octopus's "listening Tentacle")."""

from __future__ import annotations

from typing import Any

from octo_appliance.comms import Response
from octo_appliance.plugin_api import PLUGIN_API_VERSION, TransportRegistry, hookimpl
from octo_appliance.plugin_api.transports import NO_OPTIONS, CallOptions, TargetAddress, Transport


class ListeningTransport(Transport):
    name = "listening"
    agent_transport = True
    summary = "The appliance dials the agent (agent listens on a TCP port, mutual TLS)"

    async def call(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        options: CallOptions = NO_OPTIONS,
    ) -> Response:
        async with self.network.gated(target.thumbprint, options.on_event):
            conn = await self.network.listening_connection(target)
            return await conn.call(method, params, **options.as_kwargs())


OCTO_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(ListeningTransport)
