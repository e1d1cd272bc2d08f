"""Polling agents: the agent dials the appliance's polling listener and keeps the connection
open; requests go down it as soon as they exist, or wait in the agent's queue until it
connects (up to the pickup timeout)."""

from __future__ import annotations

from octo_appliance.comms import Response
from octo_appliance.plugin_api import PLUGIN_API_VERSION, TransportRegistry, hookimpl
from octo_appliance.plugin_api.transports import AgentCall, AgentTransport, TargetAddress


class PollingTransport(AgentTransport):
    name = "polling"
    summary = "The agent dials the appliance and keeps the connection open (no inbound port)"

    async def send(self, target: TargetAddress, call: AgentCall) -> Response:
        return await self.network.hub.call(
            target.thumbprint,
            call.method,
            call.params,
            pickup_timeout=self.network.pickup_timeout,
            **call.options.as_kwargs(),
        )


OCTO_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(PollingTransport)
