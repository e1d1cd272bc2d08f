"""Polling agents: the hub, its queue, pickup, cancellation, and reconnecting with backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from octo_appliance.comms import (
    Backoff,
    CommsServer,
    CommsSettings,
    IncomingRequest,
    InMemoryRequestQueue,
    PeerLost,
    PickupTimeout,
    PollingHub,
    QueuedRequest,
    ReconnectingClient,
    TrustStore,
    serve,
)

from .conftest import AGENT_HELLO, APPLIANCE_HELLO, Identities


class AgentHandler:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(self, request: IncomingRequest) -> Any:
        self.calls.append(request.method)
        if request.method == "hang":
            self.started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return f"done {request.method}"


@dataclass
class Appliance:
    server: CommsServer
    hub: PollingHub


async def hub_server(ids: Identities, settings: CommsSettings, hub: PollingHub) -> CommsServer:
    """The appliance's polling listener on a free port, trusting the agent, handing each
    connection to ``hub``."""
    return await serve(
        "127.0.0.1",
        0,
        ids.appliance,
        TrustStore([ids.agent.cert_pem]),
        hello=APPLIANCE_HELLO,
        on_connection=hub.attach,
        settings=settings,
    )


@pytest.fixture
async def appliance(ids: Identities, settings: CommsSettings) -> AsyncIterator[Appliance]:
    hub = PollingHub()
    server = await hub_server(ids, settings, hub)
    yield Appliance(server, hub)
    await hub.close()
    await server.close()


@pytest.fixture
async def make_agent(ids: Identities, settings: CommsSettings) -> AsyncIterator[Any]:
    clients: list[ReconnectingClient] = []

    def make(
        port: int, handler: Any, backoff: Backoff | None = None, **extra: Any
    ) -> ReconnectingClient:
        client = ReconnectingClient(
            "127.0.0.1",
            port,
            ids.agent,
            ids.appliance.thumbprint,
            ids.appliance.cert_pem,
            hello=AGENT_HELLO,
            handler=handler,
            settings=settings,
            backoff=backoff or Backoff(base=0.02, cap=0.1),
            **extra,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.stop()


@dataclass
class BusyAgent:
    """A polling agent connected to the appliance and busy with a call that hangs."""

    handler: AgentHandler
    agent: Any
    conn: Any  # the agent's connection
    call: asyncio.Task[Any]  # the appliance's pending call


async def _busy_agent(appliance: Appliance, make_agent: Any, ids: Identities) -> BusyAgent:
    handler = AgentHandler()
    agent = make_agent(appliance.server.port, handler)
    agent.start()
    conn = await agent.wait_connected()
    await _until(lambda: appliance.hub.is_connected(ids.agent.thumbprint))
    call = asyncio.create_task(appliance.hub.call(ids.agent.thumbprint, "hang"))
    await asyncio.wait_for(handler.started.wait(), 5)
    return BusyAgent(handler, agent, conn, call)


async def _until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def test_connected_agent_gets_the_request_at_once(
    appliance: Appliance, make_agent: Any, ids: Identities
) -> None:
    handler = AgentHandler()
    agent = make_agent(appliance.server.port, handler)
    agent.start()
    await agent.wait_connected()
    await _until(lambda: appliance.hub.is_connected(ids.agent.thumbprint))

    response = await appliance.hub.call(ids.agent.thumbprint, "health", pickup_timeout=5)

    assert response.result == "done health"
    assert appliance.hub.connected_agents == [ids.agent.thumbprint]


async def test_request_waits_in_the_queue_until_the_agent_connects(
    appliance: Appliance, make_agent: Any, ids: Identities
) -> None:
    handler = AgentHandler()
    call = asyncio.create_task(
        appliance.hub.call(ids.agent.thumbprint, "deploy", {"n": 1}, pickup_timeout=10)
    )
    await _until(lambda: handler.calls == [] and _depth(appliance, ids) == 1)

    make_agent(appliance.server.port, handler).start()

    assert (await call).result == "done deploy"
    assert _depth(appliance, ids) == 0


def _depth(appliance: Appliance, ids: Identities) -> int:
    queue = appliance.hub.queue
    assert isinstance(queue, InMemoryRequestQueue)
    return len(queue._items.get(ids.agent.thumbprint, ()))


async def test_pickup_timeout_names_the_agent_and_the_wait(
    appliance: Appliance, ids: Identities
) -> None:
    with pytest.raises(PickupTimeout) as timed_out:
        await appliance.hub.call("agent-x", "deploy", pickup_timeout=0.2)

    assert (
        timed_out.value.message == "agent agent-x did not pick up the request deploy within 0.2 s"
    )
    assert await appliance.hub.queue.depth("agent-x") == 0


async def test_cancel_before_pickup_removes_the_request(
    appliance: Appliance, make_agent: Any, ids: Identities
) -> None:
    handler = AgentHandler()
    call = asyncio.create_task(appliance.hub.call(ids.agent.thumbprint, "stale", pickup_timeout=10))
    await _until(lambda: _depth(appliance, ids) == 1)

    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert _depth(appliance, ids) == 0

    make_agent(appliance.server.port, handler).start()
    await _until(lambda: appliance.hub.is_connected(ids.agent.thumbprint))
    assert (await appliance.hub.call(ids.agent.thumbprint, "fresh")).result == "done fresh"
    assert handler.calls == ["fresh"]


async def test_cancel_after_pickup_cancels_the_handler_on_the_agent(
    appliance: Appliance, make_agent: Any, ids: Identities
) -> None:
    handler = AgentHandler()
    make_agent(appliance.server.port, handler).start()
    await _until(lambda: appliance.hub.is_connected(ids.agent.thumbprint))
    call = asyncio.create_task(appliance.hub.call(ids.agent.thumbprint, "hang"))
    await asyncio.wait_for(handler.started.wait(), 5)

    call.cancel()

    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(handler.cancelled.wait(), 5)


async def test_agent_connection_dying_mid_call_fails_with_peer_lost(
    appliance: Appliance, make_agent: Any, ids: Identities
) -> None:
    busy = await _busy_agent(appliance, make_agent, ids)
    handler, conn, call = busy.handler, busy.conn, busy.call

    conn._writer.transport.abort()  # the agent's network drops

    with pytest.raises(PeerLost, match="lost the connection to agent 'web01'"):
        await call
    await asyncio.wait_for(handler.cancelled.wait(), 5)  # nobody can receive its result


async def test_agent_reconnects_after_the_appliance_restarts_on_the_same_port(
    ids: Identities, settings: CommsSettings, make_agent: Any
) -> None:
    hub = PollingHub()
    trust = TrustStore([ids.agent.cert_pem])

    async def start(port: int) -> CommsServer:
        return await serve(
            "127.0.0.1",
            port,
            ids.appliance,
            trust,
            hello=APPLIANCE_HELLO,
            on_connection=hub.attach,
            settings=settings,
        )

    server = await start(0)
    port = server.port
    agent = make_agent(port, AgentHandler(), Backoff(base=0.05, cap=0.2))
    agent.start()
    first = await agent.wait_connected()

    await server.close("appliance restarting")
    await first.wait_closed()
    await asyncio.sleep(0.3)  # the agent retries against a closed port meanwhile
    server = await start(port)
    try:
        second = await agent.wait_connected()
        await _until(lambda: hub.is_connected(ids.agent.thumbprint))
        assert second is not first
        assert agent.connections_made == 2
        assert agent.attempt >= 1
        assert (
            await hub.call(ids.agent.thumbprint, "after-restart")
        ).result == "done after-restart"
    finally:
        await hub.close()
        await server.close()


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 1.0, 0.5),
        (1, 1.0, 1.0),
        (3, 1.0, 4.0),
        (5, 1.0, 16.0),
        (6, 1.0, 30.0),  # capped
        (1000, 1.0, 30.0),  # no overflow
        (3, 0.0, 0.0),  # full jitter reaches down to zero
        (3, 0.25, 1.0),
        (-1, 1.0, 0.5),
    ],
)
def test_backoff_is_exponential_capped_and_fully_jittered(
    attempt: int, rand: float, expected: float
) -> None:
    assert Backoff(base=0.5, cap=30.0).delay(attempt, lambda: rand) == expected


def test_backoff_spreads_a_thousand_agents() -> None:
    """After an appliance restart, a thousand agents at the same attempt do not retry at once."""
    import random

    rng = random.Random(7)
    delays = sorted(Backoff().delay(4, rng.random) for _ in range(1000))

    assert delays[0] >= 0 and delays[-1] <= 8.0
    per_second = [sum(1 for d in delays if s <= d < s + 1) for s in range(8)]
    assert max(per_second) < 200  # roughly 125 a second, not 1000 in the first


async def test_in_memory_queue_take_is_fifo_per_agent_and_cancel_safe() -> None:
    queue = InMemoryRequestQueue()
    waiting = asyncio.create_task(queue.take("a"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    for i in range(3):
        await queue.put(QueuedRequest(f"r{i}", "a", "m"))
    await queue.put(QueuedRequest("other", "b", "m"))

    assert await queue.depth("a") == 3
    assert await queue.withdraw("r1")
    assert not await queue.withdraw("r1")
    assert [(await queue.take("a")).request_id for _ in range(2)] == ["r0", "r2"]
    assert (await queue.take("b")).request_id == "other"
    assert await queue.depth("a") == 0


async def test_in_memory_queue_keeps_nothing_for_an_agent_with_nothing_waiting() -> None:
    """Thousands of idle polling agents: once a request is taken, withdrawn or given up on,
    the queue holds no state for its agent (issue 14: memory per idle connection)."""
    queue = InMemoryRequestQueue()
    taker = asyncio.create_task(queue.take("a"))
    await asyncio.sleep(0)
    assert len(queue) == 1  # the agent waiting for a request
    await queue.put(QueuedRequest("r0", "a", "m"))
    assert (await taker).request_id == "r0"
    assert len(queue) == 0

    await queue.put(QueuedRequest("r1", "b", "m"))
    assert await queue.withdraw("r1")
    assert len(queue) == 0

    giving_up = asyncio.create_task(queue.take("c"))
    await asyncio.sleep(0)
    giving_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await giving_up
    assert len(queue) == 0


async def test_request_for_an_agent_going_away_waits_for_its_next_connection(
    appliance: Appliance, make_agent: Any, ids: Identities
) -> None:
    """The agent says GOAWAY (say, it upgrades) while a call runs: a new request is not sent
    down the retiring connection but queued, and delivered once the agent is back."""
    busy = await _busy_agent(appliance, make_agent, ids)
    handler, agent, first, running = busy.handler, busy.agent, busy.conn, busy.call

    retiring = asyncio.create_task(first.shutdown("agent upgrading", grace=30))
    await _until(lambda: not appliance.hub.is_connected(ids.agent.thumbprint))
    queued = asyncio.create_task(
        appliance.hub.call(ids.agent.thumbprint, "after-upgrade", pickup_timeout=10)
    )
    await _until(lambda: _depth(appliance, ids) == 1)
    running.cancel()  # the running call ends, so the old connection closes and the agent redials

    await retiring
    assert (await queued).result == "done after-upgrade"
    assert agent.connections_made == 2
    assert handler.calls == ["hang", "after-upgrade"]


@pytest.mark.parametrize(
    ("stable_after", "expected"),
    [
        pytest.param(0.0, [0, 0, 0], id="every-connection-counts-as-stable"),
        pytest.param(60.0, [0, 1, 2], id="short-lived-connections-keep-backing-off"),
    ],
)
async def test_backoff_resets_only_after_a_stable_connection(
    ids: Identities, settings: CommsSettings, stable_after: float, expected: list[int]
) -> None:
    """A listener that accepts and at once drops the agent (say, a revoked one that passes
    TLS) must not be hammered: without a stable connection the backoff keeps growing."""
    attempts: list[int] = []

    class Recording(Backoff):
        def delay(self, attempt: int, rand: Any = None) -> float:
            attempts.append(attempt)
            return 0.001

    server = await serve(
        "127.0.0.1",
        0,
        ids.appliance,
        TrustStore([ids.agent.cert_pem]),
        hello=APPLIANCE_HELLO,
        on_connection=lambda conn: conn.close("go away"),
        settings=settings,
    )
    client = ReconnectingClient(
        "127.0.0.1",
        server.port,
        ids.agent,
        ids.appliance.thumbprint,
        hello=AGENT_HELLO,
        settings=settings,
        backoff=Recording(stable_after=stable_after),
    )
    try:
        client.start()
        await _until(lambda: len(attempts) >= 3)
    finally:
        await client.stop()
        await server.close()

    assert attempts[:3] == expected


async def test_a_client_of_several_nodes_moves_on_at_once(
    ids: Identities, settings: CommsSettings, make_agent: Any
) -> None:
    """An agent given several appliance addresses: one that refuses and one whose node then
    goes away are passed over at once, with no backoff, to the next that answers."""
    delays: list[int] = []

    class Recording(Backoff):
        def delay(self, attempt: int, rand: Any = None) -> float:
            delays.append(attempt)
            return 30.0  # a backoff would outlast the test

    hubs = [PollingHub(), PollingHub()]
    servers = [await hub_server(ids, settings, hub) for hub in hubs]
    refusing = await serve(
        "127.0.0.1", 0, ids.appliance, TrustStore([]), hello=APPLIANCE_HELLO, settings=settings
    )
    refused_port = refusing.port
    await refusing.close()  # nothing listens there now
    alternates = [("127.0.0.1", servers[0].port), ("127.0.0.1", servers[1].port)]
    client = make_agent(refused_port, None, Recording(), alternates=alternates)
    try:
        client.start()
        await _until(lambda: hubs[0].is_connected(ids.agent.thumbprint))
        await servers[0].close("the node stops")
        await _until(lambda: hubs[1].is_connected(ids.agent.thumbprint))
        assert client.port == servers[1].port
        assert delays == []
    finally:
        await client.stop()
        for hub in hubs:
            await hub.close()
        await servers[1].close()
