"""Listening agents: the agent serves mutual TLS; the appliance dials it and keeps the
connection for later calls (Octopus's "listening Tentacle")."""

from __future__ import annotations

from typing import Any

from octo_appliance.comms import Response
from octo_appliance.hookspecs import hookimpl
from octo_appliance.plugins import TransportRegistry
from octo_appliance.transports.base import NO_OPTIONS, CallOptions, TargetAddress, Transport


class ListeningTransport(Transport):
    name = "listening"
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
            return await conn.call(
                method,
                params,
                on_event=options.on_event,
                upload=options.upload,
                download_dir=options.download_dir,
                timeout=options.timeout,
            )


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(ListeningTransport)
