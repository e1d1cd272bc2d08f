"""Listening agents: the agent serves mutual TLS; the appliance dials it and keeps the
connection for later calls (Octopus's "listening Tentacle")."""

from __future__ import annotations

from octo_appliance.comms import Response
from octo_appliance.plugin_api import PLUGIN_API_VERSION, TransportRegistry, hookimpl
from octo_appliance.plugin_api.transports import AgentCall, AgentTransport, TargetAddress


class ListeningTransport(AgentTransport):
    name = "listening"
    summary = "The appliance dials the agent (agent listens on a TCP port, mutual TLS)"

    async def send(self, target: TargetAddress, call: AgentCall) -> Response:
        conn = await self.network.listening_connection(target)
        return await conn.call(call.method, call.params, **call.options.as_kwargs())


OCTO_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(ListeningTransport)
