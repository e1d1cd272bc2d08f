"""Polling agents: the agent dials the appliance's polling listener and keeps the connection
open; requests go down it as soon as they exist, or wait in the agent's queue until it
connects (up to the pickup timeout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from octo_appliance.comms import Response, UploadSource
from octo_appliance.hookspecs import hookimpl
from octo_appliance.plugins import TransportRegistry
from octo_appliance.transports.base import EventSink, TargetAddress, Transport


class PollingTransport(Transport):
    name = "polling"
    summary = "The agent dials the appliance and keeps the connection open (no inbound port)"

    async def call(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        *,
        on_event: EventSink | None = None,
        upload: UploadSource | None = None,
        download_dir: Path | None = None,
        timeout: float | None = None,
    ) -> Response:
        return await self.network.hub.call(
            target.thumbprint,
            method,
            params,
            pickup_timeout=self.network.pickup_timeout,
            on_event=on_event,
            upload=upload,
            download_dir=download_dir,
            timeout=timeout,
        )


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(PollingTransport)
