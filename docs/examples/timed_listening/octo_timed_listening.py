"""An example transport (docs/plugins.md): ``timed-listening`` reaches listening agents like
the built-in ``listening`` transport, with a per-call time limit of its own declared as a
setting (``[transports.timed-listening] call_timeout_seconds = 30`` in config.toml, or
``OCTO_TIMED_LISTENING_CALL_TIMEOUT_SECONDS``)."""

from __future__ import annotations

from octo_appliance.comms import Response
from octo_appliance.plugin_api import (
    PLUGIN_API_VERSION,
    AgentCall,
    AgentTransport,
    TargetAddress,
    TransportContext,
    TransportRegistry,
    hookimpl,
    transport_setting,
)

OCTO_PLUGIN_API = PLUGIN_API_VERSION


class TimedListening(AgentTransport):
    """An agent transport: the base class's ``call`` waits while the agent updates itself,
    then hands the call to ``send``; its context holds the agent network."""

    name = "timed-listening"
    summary = "Listening agents, with a per-call time limit"
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

    async def send(self, target: TargetAddress, call: AgentCall) -> Response:
        connection = await self.network.listening_connection(target)
        options = call.options.limited(self.limit)
        return await connection.call(call.method, call.params, **options.as_kwargs())


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(TimedListening)
