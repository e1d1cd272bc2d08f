"""An example transport (docs/plugins.md): ``timed-listening`` reaches listening agents like
the built-in ``listening`` transport, with a per-call time limit of its own declared as a
setting (``[transports.timed-listening] call_timeout_seconds = 30`` in config.toml, or
``OCTO_TIMED_LISTENING_CALL_TIMEOUT_SECONDS``)."""

from __future__ import annotations

from typing import Any

from octo_appliance.comms import Response
from octo_appliance.plugin_api import (
    NO_OPTIONS,
    PLUGIN_API_VERSION,
    CallOptions,
    TargetAddress,
    Transport,
    TransportContext,
    TransportRegistry,
    hookimpl,
    transport_setting,
)

OCTO_PLUGIN_API = PLUGIN_API_VERSION


class TimedListening(Transport):
    name = "timed-listening"
    summary = "Listening agents, with a per-call time limit"
    #: it talks to agents, so its context holds the agent network
    agent_transport = True
    settings = (
        transport_setting(
            "call_timeout_seconds", int, 60, "Longest one call to an agent may take.", minimum=1
        ),
    )

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        self.limit = float(context.settings["call_timeout_seconds"])

    async def start(self) -> None:
        self.context.log.info("calls to agents time out after %.0f s", self.limit)

    async def call(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        options: CallOptions = NO_OPTIONS,
    ) -> Response:
        timeout = self.limit if options.timeout is None else min(options.timeout, self.limit)
        connection = await self.context.agents.listening_connection(target)
        return await connection.call(
            method,
            params,
            on_event=options.on_event,
            upload=options.upload,
            download_dir=options.download_dir,
            timeout=timeout,
        )


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(TimedListening)
