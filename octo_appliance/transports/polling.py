"""Polling agents: the agent dials the appliance's polling listener and keeps the connection
open; requests go down it as soon as they exist, or wait in the agent's queue until it
connects (up to the pickup timeout)."""

from __future__ import annotations

from typing import Any

from octo_appliance.comms import Response
from octo_appliance.hookspecs import hookimpl
from octo_appliance.plugins import TransportRegistry
from octo_appliance.transports.base import NO_OPTIONS, CallOptions, TargetAddress, Transport


class PollingTransport(Transport):
    name = "polling"
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
                on_event=options.on_event,
                upload=options.upload,
                download_dir=options.download_dir,
                timeout=options.timeout,
            )


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(PollingTransport)
