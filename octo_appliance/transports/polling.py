"""Polling agents: the agent dials the appliance's polling listener and keeps the connection
open; requests go down it as soon as they exist, or wait in the agent's queue until it
connects (up to the pickup timeout)."""

from __future__ import annotations

from typing import Any

from octo_appliance.comms import Response
from octo_appliance.plugin_api import PLUGIN_API_VERSION, TransportRegistry, hookimpl
from octo_appliance.plugin_api.transports import NO_OPTIONS, CallOptions, TargetAddress, Transport


class PollingTransport(Transport):
    name = "polling"
    agent_transport = True
    summary = "The agent dials the appliance and keeps the connection open (no inbound port)"

    async def call(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        options: CallOptions = NO_OPTIONS,
    ) -> Response:
        async with self.network.gated(target.thumbprint, options.on_event):
            return await self.network.hub.call(
                target.thumbprint,
                method,
                params,
                pickup_timeout=self.network.pickup_timeout,
                **options.as_kwargs(),
            )


OCTO_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(PollingTransport)
