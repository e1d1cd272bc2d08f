"""Listening agents: the agent serves mutual TLS; the appliance dials it and keeps the
connection for later calls (Octopus's "listening Tentacle")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from octo_appliance.comms import Response, UploadSource
from octo_appliance.hookspecs import hookimpl
from octo_appliance.plugins import TransportRegistry
from octo_appliance.transports.base import EventSink, TargetAddress, Transport


class ListeningTransport(Transport):
    name = "listening"
    summary = "The appliance dials the agent (agent listens on a TCP port, mutual TLS)"

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
        conn = await self.network.listening_connection(target)
        return await conn.call(
            method,
            params,
            on_event=on_event,
            upload=upload,
            download_dir=download_dir,
            timeout=timeout,
        )


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(ListeningTransport)
