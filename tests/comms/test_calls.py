"""Calls over real TLS connections: both topologies, both directions, concurrency, events,
errors, timeouts and cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from octo_appliance.comms import (
    CallFailed,
    CallTimeout,
    CommsSettings,
    Connection,
    ConnectionClosed,
    IncomingRequest,
    MessageTooLarge,
    TrustStore,
    serve,
)
from octo_appliance.comms.framing import PROTOCOL_VERSION

from .conftest import AGENT_HELLO, APPLIANCE_HELLO, Identities, StartAgent, dial_pinned


async def echo(request: IncomingRequest) -> Any:
    return {"method": request.method, "params": request.params, "from": request.peer_hello["role"]}


async def test_listening_round_trip(start_agent: StartAgent, ids: Identities) -> None:
    agent = await start_agent(echo)
    conn = await agent.dial()

    response = await conn.call("ping", {"n": 1})

    assert response.result == {"method": "ping", "params": {"n": 1}, "from": "appliance"}
    assert response.file_path is None
    assert conn.peer_thumbprint == ids.agent.thumbprint
    assert conn.peer_hello["role"] == "agent"
    assert conn.peer_hello["agent_version"] == "0.1.0"
    assert conn.protocol_version == PROTOCOL_VERSION
    (server_side,) = agent.server.connections
    assert server_side.peer_thumbprint == ids.appliance.thumbprint


async def test_polling_topology_both_directions(ids: Identities, settings: CommsSettings) -> None:
    """The agent dials; the appliance then calls down that connection, and vice versa."""
    accepted: asyncio.Queue[Connection] = asyncio.Queue()

    async def appliance_handler(request: IncomingRequest) -> Any:
        return f"appliance saw {request.method}"

    server = await serve(
        "127.0.0.1",
        0,
        ids.appliance,
        TrustStore([ids.agent.cert_pem]),
        hello=APPLIANCE_HELLO,
        handler=appliance_handler,
        on_connection=accepted.put_nowait,
        settings=settings,
    )
    try:
        agent_conn = await dial_pinned(
            server.port, ids.agent, ids.appliance, AGENT_HELLO, handler=echo, settings=settings
        )
        appliance_conn = await accepted.get()
        assert appliance_conn.peer_hello["id"] == "web01"

        down = await appliance_conn.call("run", {"script": "true"})
        up = await agent_conn.call("report")

        assert down.result["from"] == "appliance"
        assert up.result == "appliance saw report"
        agent_conn.close()
        assert "closed by this side" in (await agent_conn.wait_closed()).message
        lost = await appliance_conn.wait_closed()
        assert "going away" in lost.message
    finally:
        await server.close()


async def test_concurrent_calls_complete_out_of_order(start_agent: StartAgent) -> None:
    release: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(5)}
    finished: list[int] = []

    async def handler(request: IncomingRequest) -> Any:
        number = request.params["i"]
        await release[number].wait()
        return number

    agent = await start_agent(handler)
    conn = await agent.dial()

    async def one(i: int) -> None:
        response = await conn.call("wait", {"i": i})
        finished.append(response.result)

    tasks = [asyncio.create_task(one(i)) for i in range(5)]
    for i in (3, 1, 4, 0, 2):
        release[i].set()
        while i not in finished:
            await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)

    assert finished == [3, 1, 4, 0, 2]


async def test_events_arrive_in_order_before_the_response(start_agent: StartAgent) -> None:
    async def handler(request: IncomingRequest) -> Any:
        for line in range(20):
            await request.emit({"log": f"line {line}"})
        return "done"

    agent = await start_agent(handler)
    conn = await agent.dial()
    seen: list[str] = []

    async def on_event(event: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # an async consumer works, and does not reorder
        seen.append(event["log"])

    response = await conn.call("deploy", on_event=on_event)

    assert response.result == "done"
    assert seen == [f"line {i}" for i in range(20)]


async def test_handler_errors_reach_the_caller_without_internals(start_agent: StartAgent) -> None:
    async def handler(request: IncomingRequest) -> Any:
        if request.method == "refuse":
            raise CallFailed("busy", "a deployment is already running", hint="wait for it")
        raise RuntimeError("password=hunter2")

    agent = await start_agent(handler)
    conn = await agent.dial()

    with pytest.raises(CallFailed) as refused:
        await conn.call("refuse")
    with pytest.raises(CallFailed) as crashed:
        await conn.call("crash")

    assert refused.value.code == "busy"
    assert "a deployment is already running" in refused.value.message
    assert refused.value.hint == "wait for it"
    assert crashed.value.code == "internal"
    assert "RuntimeError" in crashed.value.message
    assert "hunter2" not in str(crashed.value)
    with pytest.raises(CallFailed):  # a failed call leaves the connection usable
        await conn.call("refuse")


async def test_a_side_without_handler_answers_no_handler(start_agent: StartAgent) -> None:
    agent = await start_agent(None)
    conn = await agent.dial()

    with pytest.raises(CallFailed) as failed:
        await conn.call("anything")

    assert failed.value.code == "no_handler"


async def test_cancelling_a_call_cancels_the_handler(start_agent: StartAgent) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(request: IncomingRequest) -> Any:
        if request.method == "quick":
            return "quick"
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()  # where the agent would kill the process tree
            raise
        return "never"

    agent = await start_agent(handler)
    conn = await agent.dial()
    call = asyncio.create_task(conn.call("long"))
    await started.wait()

    call.cancel()

    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(cancelled.wait(), 5)
    assert (await conn.call("quick")).result == "quick"


async def test_timeout_raises_and_cancels_the_handler(start_agent: StartAgent) -> None:
    cancelled = asyncio.Event()

    async def handler(request: IncomingRequest) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    agent = await start_agent(handler)
    conn = await agent.dial()

    with pytest.raises(CallTimeout, match=r"did not finish within 0\.2 s"):
        await conn.call("slow", timeout=0.2)
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_oversized_params_fail_locally_and_keep_the_connection(
    start_agent: StartAgent,
) -> None:
    agent = await start_agent(echo)
    conn = await agent.dial()

    with pytest.raises(MessageTooLarge, match="frame limit"):
        await conn.call("big", {"blob": "x" * (1024 * 1024 + 1)})

    assert (await conn.call("small")).result["method"] == "small"


async def test_a_result_that_is_not_json_fails_the_call_cleanly(start_agent: StartAgent) -> None:
    async def handler(request: IncomingRequest) -> Any:
        return {"when": object()}

    agent = await start_agent(handler)
    conn = await agent.dial()

    with pytest.raises(CallFailed) as failed:
        await conn.call("weird")

    assert failed.value.code == "bad_result"


async def test_graceful_shutdown_finishes_calls_and_refuses_new_ones(
    start_agent: StartAgent,
) -> None:
    release = asyncio.Event()

    async def handler(request: IncomingRequest) -> Any:
        await release.wait()
        return "finished"

    agent = await start_agent(handler)
    conn = await agent.dial()
    in_flight = asyncio.create_task(conn.call("deploy"))
    async with asyncio.timeout(5):
        while not agent.server.connections or not next(iter(agent.server.connections)).in_flight:
            await asyncio.sleep(0.005)
    (agent_side,) = agent.server.connections

    shutdown = asyncio.create_task(agent_side.shutdown("agent upgrading", grace=10))
    async with asyncio.timeout(5):
        while conn.accepts_calls:
            await asyncio.sleep(0.005)
    with pytest.raises(ConnectionClosed, match="going away \\(agent upgrading\\)"):
        await conn.call("new-work")
    release.set()

    assert (await in_flight).result == "finished"
    await shutdown
    assert "agent upgrading" in (await conn.wait_closed()).message
