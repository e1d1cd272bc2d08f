"""The caller's side of a relayed call: this node runs the task, another holds the agent.

The call becomes a ``relay_call`` row (its parameters sealed) and a notification to the
agent's node, in one statement that also finds that node (the live node holding the agent's
connection: no round trip of its own to look it up) and carries the other calls made in the
same moment (a fan-out's: one statement and one notification per node for all of them,
:mod:`.batch`); this side then waits for notifications of that call and reads what they
announce (with the other calls' reads of the moment, in one statement): new events (handed
to ``on_event`` in order, before the call returns, as on a local connection) and the
outcome. The timeout runs here, over the whole relayed call, and on the agent's node over
the agent's own call; a timeout or a cancellation here deletes the row (after the statement
inserting it, if under way) and tells the agent's node, which cancels the agent's call (the
runner there stops as it does for a local cancel). Every few seconds without news
this side checks the agent's node still heartbeats: if it stopped before taking the call,
the call is routed again (:class:`~.wire.NotPickedUp`); if it stopped during the call, the
call fails naming it.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from octo_appliance.comms import Response, UploadSource
from octo_appliance.comms.call_types import EventCallback
from octo_appliance.comms.errors import CallFailed, CallTimeout
from octo_appliance.transports.relay.files import get_chunks, put_chunks
from octo_appliance.transports.relay.wire import (
    CHANNEL,
    NOW,
    STALE_SECONDS,
    NotPickedUp,
    error_from,
    seal,
    unseal,
)

if TYPE_CHECKING:
    from octo_appliance.transports.relay.node import CallRelay

#: how long a call waits for news before it checks the agent's node is alive
CHECK_SECONDS = 3.0
#: the rows of calls (parameters: the columns of :data:`NewCall`, this node, seconds a
#: heartbeat counts, this node, the channel): each for its node, the given one or else the
#: other live node holding the agent's connection; one wake-up per node for its queued calls
INSERT_CALLS = (
    'WITH "asked" ("id", "node", "thumbprint", "method", "body", "state") AS (SELECT * FROM '
    "unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])), "
    '"added" AS (INSERT INTO "relay_call" ("id", "origin_node", "target_node", "method", '
    '"body", "state", "created_at") SELECT q."id", %s, t."node", q."method", q."body", '
    f'q."state", {NOW} FROM "asked" q CROSS JOIN LATERAL (SELECT COALESCE(NULLIF(q."node", '
    """''), (SELECT a."node_id" FROM "relay_agent" a JOIN "relay_node" n ON n."id" = """
    'a."node_id" WHERE a."thumbprint" = q."thumbprint" AND a."node_id" <> %s AND '
    f'n."seen_at" > {NOW} - %s * interval \'1 second\' LIMIT 1)) AS "node") t WHERE '
    't."node" IS NOT NULL RETURNING "id", "target_node", "state") SELECT "target_node", '
    """string_agg("id", ','), CASE WHEN bool_or("state" = 'queued') THEN pg_notify(%s, """
    """"target_node" || ' call ' || string_agg("id", ',') FILTER (WHERE "state" = """
    '\'queued\')) END FROM "added" GROUP BY "target_node"'
)


async def request(
    relay: CallRelay,
    node_id: str | None,
    thumbprint: str,
    method: str,
    params: dict[str, Any],
    *,
    pickup_timeout: float,
    on_event: EventCallback | None,
    upload: UploadSource | None,
    download_dir: Path,
    timeout: float | None,
) -> Response | None:
    """The call made by node ``node_id``, or (None) by the other live node that holds the
    agent's connection; None when there is no such node (nothing was sent)."""
    call_id = f"rcall-{uuid.uuid4().hex}"
    inbox: asyncio.Queue[str] = asyncio.Queue()
    relay.waiters[call_id] = inbox
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            target = await _submit(
                relay,
                call_id,
                node_id,
                method,
                {
                    "thumbprint": thumbprint,
                    "method": method,
                    "params": params,
                    "timeout": timeout,
                    "pickup_timeout": pickup_timeout,
                },
                upload,
            )
            if target is None:
                return None
            response, gone = await _follow(relay, call_id, target, inbox, on_event, download_dir)
    except BaseException as exc:
        await asyncio.shield(_withdraw(relay, call_id))
        if isinstance(exc, TimeoutError) and deadline.expired():
            raise CallTimeout(
                f"{method} on agent {thumbprint[:16]} (relayed) did not finish within "
                f"{timeout:g} s; the handler was asked to cancel",
                hint="raise the timeout for long operations, or check the peer's load",
            ) from None
        raise
    finally:
        relay.waiters.pop(call_id, None)
    if not gone:  # a downloaded file was read after the outcome: its rows go now
        relay.spawn(_delete(relay, call_id))  # off the call's path: nothing waits for it
    return response


async def _delete(relay: CallRelay, call_id: str) -> None:
    async with relay.pool.connection() as conn:
        await conn.execute('DELETE FROM "relay_call" WHERE "id" = %s', (call_id,))


async def _submit(
    relay: CallRelay,
    call_id: str,
    node_id: str | None,
    method: str,
    body: dict[str, Any],
    upload: UploadSource | None,
) -> str | None:
    """The call stored and its node notified; that node (None: no node to send it to)."""
    if upload is None:
        return await _insert(relay, call_id, node_id, method, body, "queued")
    # the chunks go first: the agent's node must find them all
    target = await _insert(relay, call_id, node_id, method, {**body, "chunks": 0}, "staging")
    if target is None:
        return None
    body["chunks"] = await put_chunks(relay.pool, relay.vault, call_id, "up", upload)
    async with relay.pool.connection() as conn, conn.transaction():
        await conn.execute(
            'UPDATE "relay_call" SET "state" = %s, "body" = %s WHERE "id" = %s',
            ("queued", seal(relay.vault, call_id, "request", body), call_id),
        )
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{target} call {call_id}"))
    return target


async def _insert(
    relay: CallRelay,
    call_id: str,
    node_id: str | None,
    method: str,
    body: dict[str, Any],
    state: str,
) -> str | None:
    """The row for node ``node_id`` (None: the node holding the agent's connection, if there
    is one) and, when queued, its wake-up; the node the row went to. Queued calls go with
    the others of the moment (:func:`insert_calls`)."""
    sealed = seal(relay.vault, call_id, "request", body)
    item = (call_id, node_id or "", str(body["thumbprint"]), method[:100], sealed, state)
    if state == "queued":
        return await relay.inserts.get(item)
    return (await insert_calls(relay, [item])).get(item)


#: calls to insert: (id, node or "" for the holder, thumbprint, method, sealed body, state)
NewCall = tuple[str, str, str, str, str, str]


async def insert_calls(relay: CallRelay, calls: Sequence[NewCall]) -> dict[NewCall, str]:
    """One statement (one round trip, one transaction): the rows, each for its node (the
    given one, else the live node holding the agent's connection: no round trip of its own
    to look it up), and one wake-up per node for its queued calls. The node of each call
    that went to one."""
    columns = [list(column) for column in zip(*calls, strict=True)]
    async with relay.pool.connection() as conn:
        cur = await conn.execute(
            INSERT_CALLS,
            (*columns, relay.node_id, relay.node_id, STALE_SECONDS, CHANNEL),
        )
        rows = await cur.fetchall()
    placed = {one: str(row[0]) for row in rows for one in str(row[1]).split(",")}
    return {call: placed[call[0]] for call in calls if call[0] in placed}


async def _follow(
    relay: CallRelay,
    call_id: str,
    node_id: str,
    inbox: asyncio.Queue[str],
    on_event: EventCallback | None,
    download_dir: Path,
) -> tuple[Response, bool]:
    """The call's response, and whether its rows are deleted already."""
    last = 0
    while True:
        try:
            kind = await asyncio.wait_for(inbox.get(), CHECK_SECONDS)
            while not inbox.empty():  # several notifications: one read covers them all
                inbox.get_nowait()
        except TimeoutError:
            kind = "check"
        events, state, outcome, gone = await _progress(relay, call_id, last)
        for seq, body in events:
            if on_event is not None:
                result = on_event(unseal(relay.vault, call_id, f"event/{seq}", body))
                if inspect.isawaitable(result):
                    await result
            last = seq
        if state == "done" and outcome is not None:
            return await _response(relay, call_id, outcome, download_dir), gone
        if state is None:
            raise CallFailed("relay_lost", "the relayed call vanished from the database")
        if kind == "check":
            alive, label = await relay.node_alive(node_id)
            if not alive:
                if state in ("queued", "staging"):
                    raise NotPickedUp(f"node {label} stopped before it took the call")
                raise CallFailed(
                    "node_lost",
                    f"node {label}, which holds the agent's connection, stopped during the call",
                    hint="the agent reconnects to another node; run the step again",
                )


async def _progress(
    relay: CallRelay, call_id: str, last: int
) -> tuple[list[tuple[int, str]], str | None, str | None, bool]:
    """The call's state, its events after ``last`` (the agent's node stores every event
    before or with ``done``) and whether its rows were deleted by this read: a call done
    without a file to download is over once read, and its rows go in the same statement.
    Read with the other calls' of the moment (:func:`read_progress`)."""
    return await relay.reads.get((call_id, last)) or ([], None, None, False)


#: a call's progress: its events after the last read, its state, outcome, rows deleted
Progress = tuple[list[tuple[int, str]], str | None, str | None, bool]
#: calls' states and events after a seq (parameters: ids, seqs, ids, seqs): one statement,
#: one snapshot (taken before the delete), so a "done" state comes with every event
READ_PROGRESS = (
    'WITH "asked" ("id", "last") AS (SELECT * FROM unnest(%s::text[], %s::int[])), "gone" '
    'AS (DELETE FROM "relay_call" c USING "asked" q WHERE c."id" = q."id" AND c."state" = '
    """'done' AND NOT EXISTS (SELECT 1 FROM "relay_chunk" k WHERE k."call_id" = c."id" AND """
    """k."direction" = 'down') RETURNING c."id") SELECT c."id", c."state", c."outcome", """
    'e."seq", e."body", c."id" IN (SELECT "id" FROM "gone") FROM "asked" q JOIN '
    '"relay_call" c ON c."id" = q."id" LEFT JOIN "relay_event" e ON e."call_id" = c."id" '
    'AND e."seq" > q."last" ORDER BY c."id", e."seq"'
)


async def read_progress(
    relay: CallRelay, asked: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Progress]:
    """The progress of several calls in one statement (a call vanished is left out)."""
    async with relay.pool.connection() as conn:
        cur = await conn.execute(
            READ_PROGRESS, ([i for i, _ in asked], [last for _, last in asked])
        )
        rows = await cur.fetchall()
    found: dict[str, Progress] = {}
    for row in rows:
        call_id = str(row[0])
        progress = found.get(call_id)
        if progress is None:
            outcome = None if row[2] is None else str(row[2])
            progress = found[call_id] = ([], str(row[1]), outcome, bool(row[5]))
        if row[3] is not None:
            progress[0].append((int(str(row[3])), str(row[4])))
    return {(i, last): found[i] for i, last in asked if i in found}


async def _response(
    relay: CallRelay, call_id: str, outcome_token: str, download_dir: Path
) -> Response:
    outcome = unseal(relay.vault, call_id, "outcome", outcome_token)
    error = outcome.get("error")
    if isinstance(error, dict):
        raise error_from(error)
    path = None
    chunks = int(outcome.get("chunks") or 0)
    if outcome.get("file"):
        path = await get_chunks(relay.pool, relay.vault, call_id, "down", chunks, download_dir)
    return Response(outcome.get("result"), path)


async def _withdraw(relay: CallRelay, call_id: str) -> None:
    """Delete the call (events and chunks go with it) and tell the agent's node to stop."""
    await relay.inserts.settled()  # its row, if in a statement under way, is there first
    try:
        async with relay.pool.connection() as conn:
            await conn.execute(
                'WITH "gone" AS (DELETE FROM "relay_call" WHERE "id" = %s RETURNING '
                '"target_node") SELECT pg_notify(%s, "target_node" || %s) FROM "gone"',
                (call_id, CHANNEL, f" cancel {call_id}"),
            )
    except Exception:  # the database is away: the agent's node sweeps the orphan
        pass
