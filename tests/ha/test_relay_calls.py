"""The relay between nodes on a real PostgreSQL database, its nodes in one process.

Each :class:`CallRelay` here is one node's, as ``serve`` starts it; what stands in for an
agent is the node's ``local_call`` (the call on its own connection to the agent), scripted
per test. The real processes are in ``test_relay_cluster.py``; these tests cover what is
hard to provoke there: every event in order, the timeout and a cancel reaching the agent's
call, errors keeping their kind, files both ways, sealed rows, and a node that dies before or
during a call.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from octo_appliance.comms import Response
from octo_appliance.comms.errors import CallFailed, CallTimeout, PickupTimeout
from octo_appliance.db.connection import open_database
from octo_appliance.db.migrations import migrate
from octo_appliance.transports.relay import CallRelay, RelayingHub
from octo_appliance.transports.relay.pg import Pool
from octo_appliance.transports.relay.wire import NotPickedUp
from octo_appliance.vault import Vault
from octo_appliance.vault.keys import KeyRing, MasterKey
from tests.ha.cluster import throwaway_database

pytestmark = pytest.mark.postgres

Agent = Callable[..., Awaitable[Response]]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    with throwaway_database() as url:
        db = open_database(url, tmp_path)
        migrate(db)
        db.close()
        yield url


@pytest.fixture
def vault() -> Vault:
    return Vault(KeyRing(MasterKey.generate()))


class Node:
    """One node's relay, with a scripted agent behind its ``local_call``."""

    def __init__(self, url: str, vault: Vault, name: str, spool: Path) -> None:
        self.agent: Agent = self._unset
        self.relay = CallRelay(url, vault, f"{name} (test)", spool, self._local)
        self.calls: list[str] = []

    async def _unset(self, *args: Any, **kwargs: Any) -> Response:
        raise AssertionError("no agent here")

    async def _local(self, thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Any:
        self.calls.append(method)
        return await self.agent(thumbprint, method, params, **kw)


@pytest.fixture
async def nodes(database: str, vault: Vault, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a = Node(database, vault, "nodeA", tmp_path / "a")
    b = Node(database, vault, "nodeB", tmp_path / "b")
    await a.relay.start()
    await b.relay.start()
    try:
        yield a, b
    finally:
        await a.relay.stop()
        await b.relay.stop()


def call(a: Node, b: Node, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
    options: dict[str, Any] = {
        "pickup_timeout": 30.0,
        "on_event": None,
        "upload": None,
        "download_dir": None,
        "timeout": None,
    }
    options.update(kw)
    return a.relay.call(b.relay.node_id, "f" * 64, method, params or {}, **options)


async def test_events_arrive_in_order_before_the_result(nodes: tuple[Node, Node]) -> None:
    a, b = nodes

    async def agent(thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
        for n in range(params["count"]):
            await kw["on_event"]({"type": "log", "n": n})
        return Response({"ran": method, "on": thumbprint[:4]})

    b.agent = agent
    seen: list[int] = []
    response = await call(
        a, b, "runner.run", {"count": 1500}, on_event=lambda e: seen.append(e["n"])
    )
    assert response.result == {"ran": "runner.run", "on": "ffff"}
    assert seen == list(range(1500))
    assert await _count(a, "relay_event") == 0  # the call's rows went with it


async def test_a_burst_of_calls_shares_statements_and_keeps_each_apart(
    nodes: tuple[Node, Node],
) -> None:
    """A fan-out's calls go in shared statements: each still gets its own events and
    result, one failing or withdrawn fails only itself, and no row is left behind."""
    a, b = nodes
    cancelled = asyncio.Event()

    async def agent(thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
        n = params["n"]
        if n == 7:
            return await _hang(cancelled)
        for line in range(3):
            await kw["on_event"]({"n": n, "line": line})
        if n == 3:
            raise CallFailed("boom", f"call {n} failed")
        return Response({"n": n})

    b.agent = agent
    seen: dict[int, list[tuple[int, int]]] = {n: [] for n in range(40)}

    def one(n: int) -> Any:
        return call(
            a, b, "runner.run", {"n": n}, on_event=lambda e: seen[n].append((e["n"], e["line"]))
        )

    calls = [asyncio.ensure_future(one(n)) for n in range(40)]
    async with asyncio.timeout(30):
        while len(b.calls) < 40:  # every call reached the agent's node
            await asyncio.sleep(0.05)
    calls[7].cancel()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    await asyncio.wait_for(cancelled.wait(), 10)
    for n, outcome in enumerate(outcomes):
        if n == 7:
            assert isinstance(outcome, asyncio.CancelledError)
        elif n == 3:
            assert isinstance(outcome, CallFailed) and outcome.code == "boom"
        else:
            assert isinstance(outcome, Response) and outcome.result == {"n": n}
        if n not in (3, 7):
            assert seen[n] == [(n, 0), (n, 1), (n, 2)]
    assert await _count(a, "relay_call") == 0
    assert await _count(a, "relay_event") == 0


async def test_the_timeout_cancels_the_agents_call(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    cancelled = asyncio.Event()

    async def agent(thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
        assert kw["timeout"] == 1.5  # the same timeout on the agent's node
        return await _hang(cancelled)

    b.agent = agent
    with pytest.raises(CallTimeout, match=r"did not finish within 1\.5 s"):
        await call(a, b, "runner.run", timeout=1.5)
    await asyncio.wait_for(cancelled.wait(), 10)


async def test_a_cancelled_caller_cancels_the_agents_call(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def agent(thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
        await kw["on_event"]({"type": "log", "message": "started"})
        started.set()
        return await _hang(cancelled)

    b.agent = agent
    task = asyncio.ensure_future(call(a, b, "runner.run"))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 10)


async def test_errors_keep_their_kind(nodes: tuple[Node, Node]) -> None:
    a, b = nodes

    async def failing(thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
        raise CallFailed("base_missing", "no base here", hint="send it whole")

    b.agent = failing
    with pytest.raises(CallFailed) as failed:
        await call(a, b, "cache.patch")
    assert (failed.value.code, failed.value.message, failed.value.hint) == (
        "base_missing",
        "no base here",
        "send it whole",
    )

    async def absent(thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
        raise PickupTimeout("agent did not pick up", hint="start it")

    b.agent = absent
    with pytest.raises(PickupTimeout, match="did not pick up"):
        await call(a, b, "agent.info")


async def test_files_cross_both_ways(nodes: tuple[Node, Node], tmp_path: Path) -> None:
    a, b = nodes
    content = os.urandom(1_300_000)  # three chunks

    async def agent(thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
        if method == "cache.put":
            data = Path(kw["upload"]).read_bytes()
            return Response({"sha256": hashlib.sha256(data).hexdigest()})
        out = Path(kw["download_dir"]) / "answer"
        out.write_bytes(content[::-1])
        return Response({"name": "answer"}, out)

    b.agent = agent
    put = await call(a, b, "cache.put", upload=content)
    assert put.result == {"sha256": hashlib.sha256(content).hexdigest()}
    fetched = await call(a, b, "files.fetch", download_dir=tmp_path / "got")
    assert fetched.file_path is not None and fetched.file_path.parent == tmp_path / "got"
    assert fetched.file_path.read_bytes() == content[::-1]
    assert await _count(a, "relay_chunk") == 0


async def test_params_and_events_rest_sealed(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    canary = "canary-" + os.urandom(8).hex()
    holding, release = asyncio.Event(), asyncio.Event()

    async def agent(thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
        assert params["variables"][0]["value"] == canary
        await kw["on_event"]({"type": "log", "message": f"echo {canary}"})
        holding.set()
        await release.wait()
        return Response(None)

    b.agent = agent
    got: list[dict[str, Any]] = []
    params = {"variables": [{"name": "Secret", "value": canary, "sensitive": True}]}
    task = asyncio.ensure_future(call(a, b, "runner.run", params, on_event=got.append))
    await asyncio.wait_for(holding.wait(), 10)
    for _ in range(100):  # until the caller's node has the event: its row is written
        if got:
            break
        await asyncio.sleep(0.05)
    async with a.relay.pool.connection() as conn:
        rows = await (await conn.execute('SELECT "body" FROM "relay_call"')).fetchall()
        rows += await (await conn.execute('SELECT "body" FROM "relay_event"')).fetchall()
    assert len(rows) == 2
    assert not any(canary in str(row[0]) for row in rows)
    release.set()
    await task
    assert got == [{"type": "log", "message": f"echo {canary}"}]  # the engine masks it


async def test_a_call_its_dead_node_never_took_goes_where_the_agent_is_now(
    database: str, vault: Vault, tmp_path: Path
) -> None:
    a = Node(database, vault, "nodeA", tmp_path / "a")
    b = Node(database, vault, "nodeB", tmp_path / "b")
    dead = Node(database, vault, "nodeC", tmp_path / "c")
    hub = RelayingHub()
    a.relay = CallRelay(database, vault, "nodeA (test)", tmp_path / "a", hub.local_call)
    hub.relay = a.relay
    for node in (a, b, dead):
        await node.relay.start()
    try:
        thumbprint = "e" * 64
        dead.relay.agent_connected(thumbprint)
        await _wait_recorded(database, thumbprint)
        await kill(dead)

        async def agent(tp: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
            return Response({"served_by": "nodeB"})

        b.agent = agent
        pending = asyncio.ensure_future(hub.call(thumbprint, "agent.info", {}, pickup_timeout=60))
        await asyncio.sleep(1)
        assert not pending.done()
        await _age(database, dead.relay.node_id)  # its heartbeat stops counting
        b.relay.agent_connected(thumbprint)  # the agent reconnected to node B
        response = await asyncio.wait_for(pending, 30)
        assert response.result == {"served_by": "nodeB"}
        assert b.calls == ["agent.info"]
    finally:
        for node in (a, b, dead):
            await node.relay.stop()


async def test_a_call_under_way_when_its_node_dies_fails_naming_the_node(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    started = asyncio.Event()

    async def agent(thumbprint: str, method: str, params: dict[str, Any], **kw: Any) -> Response:
        started.set()
        await asyncio.sleep(300)
        return Response(None)

    b.agent = agent
    pending = asyncio.ensure_future(call(a, b, "runner.run"))
    await asyncio.wait_for(started.wait(), 10)
    await kill(b)
    await _age(database_of(a), b.relay.node_id)
    with pytest.raises(CallFailed, match=r"node nodeB \(test\), which holds") as failed:
        await asyncio.wait_for(pending, 30)
    assert failed.value.code == "node_lost"
    with pytest.raises(NotPickedUp):  # a call to it now is routed elsewhere, never run there
        await call(a, b, "agent.info")


async def test_the_relay_commits_without_waiting_for_the_flush(database: str) -> None:
    """PostgreSQL commits every transaction that notifies one at a time: the relay's must not
    hold that lock through a WAL flush each (pg.py), whatever the database's default."""
    with psycopg.connect(database, autocommit=True) as conn:
        name = sql.Identifier(str(conn.info.dbname))
        conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(name))
    with psycopg.connect(database, autocommit=True) as conn:
        default = conn.execute("SHOW synchronous_commit").fetchone()
    assert default is not None and default[0] == "on"
    pool = Pool(database)
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
    finally:
        await pool.close()
    assert row is not None and row[0] == "off"


async def test_agents_are_recorded_again_after_the_listener_reconnects(
    nodes: tuple[Node, Node],
) -> None:
    """An agent row lost with PostgreSQL (a crash takes the last asynchronous commits and
    every connection) is written again when the node's listener is back."""
    a, _ = nodes
    url = database_of(a)
    thumbprint = "d" * 64
    a.relay.agent_connected(thumbprint)
    await _wait_recorded(url, thumbprint)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('DELETE FROM "relay_agent" WHERE "thumbprint" = %s', (thumbprint,))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
        )
    await _wait_recorded(url, thumbprint)


async def kill(node: Node) -> None:
    """As ``kill -9`` leaves it: the rows stay, nothing listens, heartbeats or serves."""
    relay = node.relay
    await relay.listener.stop()
    if relay._heartbeat is not None:
        relay._heartbeat.cancel()
    await relay.server.stop()


def database_of(node: Node) -> str:
    return str(node.relay.pool._url)


async def _hang(cancelled: asyncio.Event) -> Response:
    """The agent's side of a call that never ends: it sets ``cancelled`` when cancelled."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    return Response(None)


async def _age(url: str, node_id: str) -> None:
    """The node's last heartbeat an hour ago: it no longer counts."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            'UPDATE "relay_node" SET "seen_at" = "seen_at" - interval \'1 hour\' WHERE "id" = %s',
            (node_id,),
        )


async def _wait_recorded(url: str, thumbprint: str) -> None:
    for _ in range(300):
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                'SELECT 1 FROM "relay_agent" WHERE "thumbprint" = %s', (thumbprint,)
            ).fetchone()
        if row:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the agent's connection was not recorded")


async def _count(node: Node, table: str) -> int:
    await asyncio.sleep(0.2)  # the caller deletes its finished call off its path
    async with node.relay.pool.connection() as conn:
        row = await (await conn.execute(f'SELECT count(*) FROM "{table}"')).fetchone()
    return int(row[0]) if row else -1
