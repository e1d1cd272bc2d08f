"""The caller's side of a relayed call: this node runs the task, another holds the agent.

The call becomes a ``relay_call`` row (its parameters sealed) and a notification to the
agent's node, in one statement that also finds that node (the live node holding the agent's
connection: no round trip of its own to look it up); this side then waits for notifications
of that call and reads what they announce: new events (handed to ``on_event`` in order,
before the call returns, as on a local connection) and the outcome. The timeout runs here,
over the whole relayed call, and on the agent's node over the agent's own call; a timeout or
a cancellation here deletes the row and tells the agent's node, which cancels the agent's
call (the runner there stops as it does for a local cancel). Every few seconds without news
this side checks the agent's node still heartbeats: if it stopped before taking the call,
the call is routed again (:class:`~.wire.NotPickedUp`); if it stopped during the call, the
call fails naming it.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
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
#: the other live node holding an agent's connection (parameters: thumbprint, this node,
#: seconds a heartbeat counts)
HOLDER = (
    'SELECT a."node_id" FROM "relay_agent" a JOIN "relay_node" n ON n."id" = a."node_id" '
    f'WHERE a."thumbprint" = %s AND a."node_id" <> %s AND n."seen_at" > {NOW} - %s * '
    "interval '1 second'"
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
    """One statement (one round trip, one transaction): the row for node ``node_id`` (None:
    the node holding the agent's connection, if there is one) and, when queued, its wake-up.
    The node the row went to."""
    found: list[object]
    if node_id is not None:
        target, found = "SELECT %s::text", [node_id]
    else:
        target, found = HOLDER, [str(body["thumbprint"]), relay.node_id, STALE_SECONDS]
    wake = ', pg_notify(%s, "target_node" || %s)' if state == "queued" else ""
    async with relay.pool.connection() as conn:
        cur = await conn.execute(
            f'WITH "target" ("node") AS ({target} LIMIT 1), "added" AS (INSERT INTO '
            '"relay_call" ("id", "origin_node", "target_node", "method", "body", "state", '
            f'"created_at") SELECT %s, %s, "node", %s, %s, %s, {NOW} FROM "target" '
            f'RETURNING "target_node") SELECT "target_node"{wake} FROM "added"',
            (
                *found,
                call_id,
                relay.node_id,
                method[:100],
                seal(relay.vault, call_id, "request", body),
                state,
                *((CHANNEL, f" call {call_id}") if wake else ()),
            ),
        )
        row = await cur.fetchone()
    return str(row[0]) if row else None


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
    without a file to download is over once read, and its rows go in the same statement."""
    async with relay.pool.connection() as conn:
        # one statement, one snapshot (taken before the delete): a "done" state comes with
        # every event
        cur = await conn.execute(
            'WITH "gone" AS (DELETE FROM "relay_call" WHERE "id" = %s AND "state" = %s AND '
            'NOT EXISTS (SELECT 1 FROM "relay_chunk" WHERE "call_id" = %s AND "direction" = '
            '%s) RETURNING 1) SELECT c."state", c."outcome", e."seq", e."body", EXISTS '
            '(SELECT 1 FROM "gone") FROM "relay_call" c LEFT JOIN "relay_event" e ON '
            'e."call_id" = c."id" AND e."seq" > %s WHERE c."id" = %s ORDER BY e."seq"',
            (call_id, "done", call_id, "down", last, call_id),
        )
        rows = await cur.fetchall()
    row = rows[0] if rows else None
    events = [(int(str(r[2])), str(r[3])) for r in rows if r[2] is not None]
    if row is None:
        return events, None, None, False
    return events, str(row[0]), None if row[1] is None else str(row[1]), bool(row[4])


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
    try:
        async with relay.pool.connection() as conn:
            await conn.execute(
                'WITH "gone" AS (DELETE FROM "relay_call" WHERE "id" = %s RETURNING '
                '"target_node") SELECT pg_notify(%s, "target_node" || %s) FROM "gone"',
                (call_id, CHANNEL, f" cancel {call_id}"),
            )
    except Exception:  # the database is away: the agent's node sweeps the orphan
        pass
