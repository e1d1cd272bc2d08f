"""Events of one call are flow-controlled (protocol version 2): a handler that emits faster
than the requester handles them is held back, so neither side queues them without limit."""

from __future__ import annotations

import asyncio
from typing import Any

from octo_appliance.comms import IncomingRequest, LocalHello
from octo_appliance.comms.framing import EVENT_WINDOW

from .conftest import StartAgent

EVENTS = 5_000


class Chatty:
    """A handler emitting numbered events as fast as it may."""

    def __init__(self) -> None:
        self.emitted = 0

    async def __call__(self, request: IncomingRequest) -> Any:
        for number in range(EVENTS):
            await request.emit({"n": number})
            self.emitted += 1
        return "done"


async def test_a_slow_requester_holds_the_handler_back(start_agent: StartAgent) -> None:
    handler = Chatty()
    agent = await start_agent(handler)
    conn = await agent.dial()
    gate = asyncio.Event()
    seen: list[int] = []
    ahead_while_paused: list[int] = []

    async def on_event(event: dict[str, Any]) -> None:
        if len(seen) == 10:
            await asyncio.sleep(0.5)  # let the handler run ahead if it can
            ahead_while_paused.append(handler.emitted - len(seen))
            gate.set()
        seen.append(event["n"])

    response = await conn.call("chatty", on_event=on_event)

    assert response.result == "done"
    assert seen == list(range(EVENTS))  # every event, in order
    # the handler was held within one window (plus the event being handled) of the consumer
    assert ahead_while_paused and ahead_while_paused[0] <= EVENT_WINDOW + 1


async def test_a_version_1_peer_still_gets_every_event(start_agent: StartAgent) -> None:
    handler = Chatty()
    agent = await start_agent(handler)
    conn = await agent.dial(hello=LocalHello(role="appliance", version=1, min_version=1))
    seen: list[int] = []

    response = await conn.call("chatty", on_event=lambda event: seen.append(event["n"]))

    assert conn.protocol_version == 1
    assert response.result == "done"
    assert seen == list(range(EVENTS))
