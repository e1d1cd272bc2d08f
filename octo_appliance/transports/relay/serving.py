"""The agent's side of a relayed call: this node holds the agent's connection.

A ``call`` notification names rows (a burst of calls from one fan-out: one notification);
this node takes them, the calls of the moment in one update (only their target node ever
tries, the update makes a repeat harmless). Each call then runs on this node's own
connection to the agent, with the caller's timeout, pickup timeout and upload, as a local
call does; its events are written as rows in batches (whatever arrived while the previous
batch was written, so a chatty runner does not cost a round trip per line) and the agent is
held back while more than :data:`WINDOW` events wait, as the comms flow control holds it
back on a slow local consumer. The events not yet written when the answer comes go with the
outcome. Every call's news of the moment (event batches, outcomes) goes in one statement
with one notification per calling node (:mod:`.batch`): a fan-out's short calls cost a few
statements between them, not a few each.
A ``cancel`` notification, or the row gone (the caller's node died or withdrew it), cancels
the agent's call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from octo_appliance.transports.relay.batch import Batcher
from octo_appliance.transports.relay.files import get_chunks, put_chunks
from octo_appliance.transports.relay.wire import CHANNEL, error_json, seal, unseal

if TYPE_CHECKING:
    from octo_appliance.transports.relay.node import CallRelay, LocalCall

log = logging.getLogger("octo_appliance.relay")

#: events buffered before the agent's call is held back
WINDOW = 256
#: calls taken (parameters: ids, this node)
CLAIM_CALLS = (
    'UPDATE "relay_call" SET "state" = \'running\' WHERE "id" = ANY(%s) AND "target_node" = %s '
    'AND "state" = \'queued\' RETURNING "id", "origin_node", "body"'
)
#: events of calls and calls done, in one statement: the events, the outcomes and one wake-up
#: per calling node (parameters: events' ids, call ids, seqs, bodies; calls' ids, outcomes
#: ("": events only); the channel, calls' ids, their nodes, outcomes)
WRITE_NEWS = (
    'WITH "added" AS (INSERT INTO "relay_event" ("id", "call_id", "seq", "body") SELECT i, c, '
    's, b FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[]) AS t(i, c, s, b)), "set" '
    'AS (UPDATE "relay_call" c SET "state" = \'done\', "outcome" = t.o FROM '
    "unnest(%s::text[], %s::text[]) AS t(i, o) WHERE c.\"id\" = t.i AND t.o <> '') SELECT "
    "pg_notify(%s, t.n || CASE WHEN bool_or(t.o <> '') THEN ' done ' ELSE ' event ' END || "
    "string_agg(t.i, ',')) FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(i, n, o) "
    "GROUP BY t.n"
)
#: a call's news: (id, calling node, sealed outcome or "" (not done), events' ids, seqs, bodies)
News = tuple[str, str, str, tuple[str, ...], tuple[int, ...], tuple[str, ...]]


class Server:
    def __init__(self, relay: CallRelay, local_call: LocalCall) -> None:
        self.relay = relay
        self.local_call = local_call
        self.serving: dict[str, asyncio.Task[None]] = {}
        #: calls taken, and events and outcomes written, in the same moment: one statement each
        self.claims: Batcher[str, tuple[str, str]] = Batcher(self._claim)
        self.news: Batcher[News, None] = Batcher(self._write_news)

    def notified(self, kind: str, call_id: str) -> None:
        if kind == "cancel":
            task = self.serving.get(call_id)
            if task is not None:
                task.cancel()
            return
        if call_id not in self.serving:
            self._start(call_id)

    def _start(self, call_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(call_id))
        self.serving[call_id] = task
        task.add_done_callback(lambda _: self.serving.pop(call_id, None))

    async def sweep(self) -> None:
        """Take calls whose notification was missed; cancel calls whose row is gone."""
        async with self.relay.pool.connection() as conn:
            cur = await conn.execute(
                'SELECT "id" FROM "relay_call" WHERE "target_node" = %s AND "state" = %s',
                (self.relay.node_id, "queued"),
            )
            queued = [str(row[0]) for row in await cur.fetchall()]
            running = list(self.serving)
            cur = await conn.execute(
                'SELECT "id" FROM "relay_call" WHERE "id" = ANY(%s)', (running,)
            )
            present = {str(row[0]) for row in await cur.fetchall()}
        for call_id in queued:
            if call_id not in self.serving:
                self._start(call_id)
        for call_id in running:
            task = self.serving.get(call_id)
            if call_id not in present and task is not None:
                task.cancel()

    async def stop(self) -> None:
        tasks = list(self.serving.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _claim(self, call_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        async with self.relay.pool.connection() as conn:
            cur = await conn.execute(CLAIM_CALLS, (list(call_ids), self.relay.node_id))
            rows = await cur.fetchall()
        return {str(row[0]): (str(row[1]), str(row[2])) for row in rows}

    async def _write_news(self, done: Sequence[News]) -> dict[News, None]:
        events = [(e, c[0], s, b) for c in done for e, s, b in zip(*c[3:], strict=True)]
        columns = [list(column) for column in zip(*events, strict=True)] or [[], [], [], []]
        calls, outcomes = [c[0] for c in done], [c[2] for c in done]
        async with self.relay.pool.connection() as conn:
            await conn.execute(
                WRITE_NEWS,
                (*columns, calls, outcomes, CHANNEL, calls, [c[1] for c in done], outcomes),
            )
        return {}

    async def _serve(self, call_id: str) -> None:
        relay = self.relay
        row = await self.claims.get(call_id)
        if row is None:
            return  # withdrawn, or taken already
        origin, request = row[0], unseal(relay.vault, call_id, "request", row[1])
        events = _EventWriter(relay, self.news, call_id, origin)
        upload: Path | None = None
        outcome: dict[str, Any]
        try:
            params = dict(request.get("params") or {})
            if relay.prepare is not None:
                await relay.prepare(str(request["method"]), params)
            if request.get("chunks"):
                upload = await get_chunks(
                    relay.pool, relay.vault, call_id, "up", int(request["chunks"]), relay.spool
                )
            response = await self.local_call(
                str(request["thumbprint"]),
                str(request["method"]),
                params,
                on_event=events.put,
                upload=upload,
                download_dir=relay.spool,
                timeout=request.get("timeout"),
                pickup_timeout=float(request.get("pickup_timeout") or 120.0),
            )
            rest = await events.close()
            outcome = {"result": response.result, "file": response.file_path is not None}
            if response.file_path is not None:
                try:
                    outcome["chunks"] = await put_chunks(
                        relay.pool, relay.vault, call_id, "down", response.file_path
                    )
                finally:
                    response.file_path.unlink(missing_ok=True)
        except asyncio.CancelledError:
            events.abort()
            raise
        except Exception as exc:
            events.abort()
            rest = []
            outcome = {"error": error_json(exc)}
            if not hasattr(exc, "message"):
                log.exception("relayed call %s failed", call_id)
        finally:
            if upload is not None:
                upload.unlink(missing_ok=True)
        ids, seqs, bodies = events.rows(rest)
        sealed = seal(relay.vault, call_id, "outcome", outcome)
        # stored and announced with the other calls done in the same moment
        await self.news.get((call_id, origin, sealed, tuple(ids), tuple(seqs), tuple(bodies)))


class _EventWriter:
    """A relayed call's events, written in order, in batches, by one task."""

    def __init__(
        self, relay: CallRelay, news: Batcher[News, None], call_id: str, origin: str
    ) -> None:
        self.relay, self.news, self.call_id, self.origin = relay, news, call_id, origin
        self.pending: list[dict[str, Any]] = []
        self.seq = 0
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.closing = False
        self.failed: BaseException | None = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def put(self, event: dict[str, Any]) -> None:
        if self.failed is not None:
            raise self.failed
        self.pending.append(event)
        self.wake.set()
        if len(self.pending) >= WINDOW:
            self.room.clear()
            await self.room.wait()

    async def close(self) -> list[dict[str, Any]]:
        """Stop writing (a batch under way is finished); the events not written yet, which
        go with the outcome."""
        self.closing = True
        self.wake.set()
        await self.task
        if self.failed is not None:
            raise self.failed
        rest, self.pending = self.pending, []
        return rest

    def abort(self) -> None:
        self.task.cancel()

    async def _run(self) -> None:
        try:
            while not self.closing:
                await self.wake.wait()
                self.wake.clear()
                while self.pending and not self.closing:
                    batch, self.pending = self.pending, []
                    self.room.set()
                    await self._write(batch)
        except Exception as exc:
            self.failed = exc
            self.room.set()

    def rows(self, batch: list[dict[str, Any]]) -> tuple[list[str], list[int], list[str]]:
        """The next events as the columns of their rows (ids, seqs, sealed bodies)."""
        ids, seqs, bodies = [], [], []
        for event in batch:
            self.seq += 1
            ids.append(f"{self.call_id[:30]}-e{self.seq}")
            seqs.append(self.seq)
            bodies.append(seal(self.relay.vault, self.call_id, f"event/{self.seq}", event))
        return ids, seqs, bodies

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        ids, seqs, bodies = self.rows(batch)  # with the other calls' news of the moment
        await self.news.get((self.call_id, self.origin, "", tuple(ids), tuple(seqs), tuple(bodies)))
