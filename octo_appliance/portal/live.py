"""The dashboard, live: ``GET /dashboard/events``, a server-sent-events stream of changed cells.

Deployments run in the engine (started from the portal, the API or the CLI, maybe on another
node), so the stream watches the database rather than one process: every second it reads a
small *change token* (the number of deployments and the state of the unfinished ones, through
the index on ``Deployment.state``), once for all of a process's open streams
(:class:`TokenWatch`). Only when the token changes does it read the caller's
dashboard again (the API's ``get_dashboard``, so the caller's ``project.view`` scope), and it
sends each cell that differs from what it sent before as a ``cell`` event holding the cell's
HTML, which ``static/dashboard-live.js`` swaps in.

Each event's id is the token's hash, as is the page's ``data-version``: a browser that
reconnects (``Last-Event-ID``) or opens the stream after a change it did not see is told
``stale`` and reloads the page. A stream ends after :data:`MAX_STREAM_SECONDS`; the browser
reconnects, so the session is checked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import peewee
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from octo_appliance.api.dashboard import DashboardQuery, get_dashboard
from octo_appliance.db import Deployment
from octo_appliance.db.base import tuples
from octo_appliance.db.tasks import FINAL_STATES, ServerTask
from octo_appliance.exceptions import DatabaseUnavailable

if TYPE_CHECKING:
    from octo_appliance.api.context import RequestContext
    from octo_appliance.portal.routes import Portal

POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
MAX_STREAM_SECONDS = 300.0
RETRY_MILLISECONDS = 2000

Cells = dict[str, dict[str, Any]]


def change_token() -> str:
    """A hash that changes whenever any dashboard cell may have changed."""
    count = Deployment.select().count()
    unfinished = (
        Deployment.select(Deployment.id, Deployment.state, ServerTask.state)
        .join(ServerTask, peewee.JOIN.LEFT_OUTER, on=(ServerTask.id == Deployment.task_id))
        .where(Deployment.state.not_in(sorted(FINAL_STATES)))
        .order_by(Deployment.id)
    )
    text = repr((count, list(tuples(unfinished))))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cells(data: dict[str, Any]) -> Cells:
    """The dashboard's items by cell key ``PROJECT:ENVIRONMENT``."""
    return {f"{item['project_id']}:{item['environment_id']}": item for item in data["items"]}


def dashboard_now(
    ctx: RequestContext, query: DashboardQuery | None = None
) -> tuple[str, dict[str, Any]]:
    """The token read *before* the dashboard: a change in between shows as a new token."""
    return change_token(), get_dashboard(ctx, query)


async def events(portal: Portal, request: Request) -> Response:
    """``GET /dashboard/events?version=`` (``text/event-stream``)."""
    ctx = await portal.signed_in(request)
    if ctx is None:
        return Response("sign in first", 401, media_type="text/plain")
    from octo_appliance.portal.dashboard import page_query  # the page imports this module

    seen = request.headers.get("last-event-id") or request.query_params.get("version", "")
    query, _details = page_query(request.query_params)
    return StreamingResponse(
        _stream(portal, ctx, seen.strip(), query),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class TokenWatch:
    """One reader of the change token for every open dashboard stream of a portal: it reads
    once a second while at least one stream listens, and wakes them all when it moves, so a
    hundred open dashboards cost one small query a second, not a hundred."""

    def __init__(self, portal: Portal) -> None:
        self._portal = portal
        self._token = ""
        #: how many times the token moved; a stream waits for it to change
        self.generation = 0
        self._listeners = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._moved: asyncio.Event | None = None
        self._poller: asyncio.Task[None] | None = None

    def listen(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # (tests run each stream's loop anew)
            self._loop, self._moved, self._poller = loop, asyncio.Event(), None
        self._listeners += 1
        if self._poller is None or self._poller.done():
            self._poller = loop.create_task(self._poll())

    def leave(self) -> None:
        self._listeners -= 1

    async def moved_since(self, generation: int, timeout: float) -> int:
        """The generation once it is past ``generation``, or after ``timeout`` as it is."""
        moved = self._moved
        if self.generation == generation and moved is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await moved.wait()
        return self.generation

    async def _poll(self) -> None:
        while self._listeners > 0:
            await asyncio.sleep(POLL_SECONDS)
            try:
                token = await self._portal.run(change_token)
            except DatabaseUnavailable:  # the streams outlive an outage
                continue
            if token != self._token:
                self._token = token
                self.generation += 1
                assert self._moved is not None
                self._moved.set()
                self._moved = asyncio.Event()


_WATCHES: weakref.WeakKeyDictionary[Portal, TokenWatch] = weakref.WeakKeyDictionary()


def watch_of(portal: Portal) -> TokenWatch:
    if portal not in _WATCHES:
        _WATCHES[portal] = TokenWatch(portal)
    return _WATCHES[portal]


def _cell_event(portal: Portal, token: str, key: str, item: dict[str, Any]) -> str:
    html = portal.templates.env.get_template("_dashboard_cell.html").module.cell(key, item)  # type: ignore[attr-defined]
    payload = {"cell": key, "state": item["state"], "html": str(html)}
    return f"id: {token}\nevent: cell\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def _stream(
    portal: Portal, ctx: RequestContext, seen: str, query: DashboardQuery | None = None
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    started = sent_at = loop.time()
    token, data = await portal.run(lambda: dashboard_now(ctx, query))
    yield f"retry: {RETRY_MILLISECONDS}\n\n"  # sent once the baseline is read
    if seen and seen != token:
        yield f"id: {token}\nevent: stale\ndata: {{}}\n\n"
        return
    shown = cells(data)
    watch = watch_of(portal)
    watch.listen()
    try:
        generation = watch.generation
        while loop.time() - started < MAX_STREAM_SECONDS:
            moved = await watch.moved_since(generation, KEEPALIVE_SECONDS)
            if moved != generation:
                generation = moved
                try:
                    fresh_token, data = await portal.run(lambda: dashboard_now(ctx, query))
                except DatabaseUnavailable:
                    continue
                if fresh_token != token:
                    token, fresh = fresh_token, cells(data)
                    for key, item in fresh.items():
                        if shown.get(key) != item:
                            yield _cell_event(portal, token, key, item)
                    shown = fresh
                    yield f"id: {token}\n\n"  # the browser's Last-Event-ID, whatever it saw
                    sent_at = loop.time()
            if loop.time() - sent_at >= KEEPALIVE_SECONDS:
                yield ": keepalive\n\n"
                sent_at = loop.time()
    finally:
        watch.leave()
