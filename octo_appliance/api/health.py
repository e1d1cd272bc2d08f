"""``GET /api/v1/health``: liveness for load balancers and the smoke test; no auth.

It says whether the database answers, because nearly every request needs it: 200 with
``"database": "up"``, or 503 with ``"database": "down"`` and ``Retry-After`` while the
database is unavailable, so a load balancer sends no traffic to a node that can only answer
503. On PostgreSQL the check is a ``SELECT 1``, skipped when another statement succeeded
within the last second (load balancers poll often); it never waits longer than one connection
attempt. On SQLite there is no connection to lose and no check.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance import __version__
from octo_appliance.api.context import RequestContext
from octo_appliance.api.errors import retry_after
from octo_appliance.api.routing import Router, json_response
from octo_appliance.api.schemas import Out
from octo_appliance.db.reconnect import DatabaseStatus
from octo_appliance.exceptions import DatabaseUnavailable

router = Router("system")

#: a statement that succeeded this recently (seconds) stands for the check
RECENT_SECONDS = 1.0


class Health(Out):
    status: str
    version: str
    database: str
    #: while the database is down: since when (ISO 8601) and what to do
    down_since: str | None = None
    message: str | None = None


def _database_down(ctx: RequestContext) -> DatabaseUnavailable | None:
    db = ctx.appliance.db
    status = getattr(db, "status", None)
    if not isinstance(status, DatabaseStatus):
        return None  # SQLite: a file of the appliance's own, nothing to lose a connection to
    if status.up and status.seconds_since_ok() < RECENT_SECONDS:
        return None
    try:
        db.execute_sql("SELECT 1")  # type: ignore[no-untyped-call]
    except DatabaseUnavailable as exc:
        return exc
    return None


@router.get(
    "/health",
    summary="Liveness, version and whether the database answers (503 while it does not)",
    auth=False,
    response=Health,
    errors=(503,),
    raw_response=True,
)
def health(ctx: RequestContext, request: Request) -> Response:
    down = _database_down(ctx)
    if down is None:
        return json_response({"status": "ok", "version": __version__, "database": "up"})
    body: dict[str, Any] = {"status": "unavailable", "version": __version__, "database": "down"}
    status = getattr(ctx.appliance.db, "status", None)
    if isinstance(status, DatabaseStatus) and status.down_since is not None:
        since = datetime.fromtimestamp(status.down_since, UTC).replace(tzinfo=None)
        body["down_since"] = since.isoformat(timespec="seconds") + "Z"
    body["message"] = f"{down.message} ({down.hint})" if down.hint else down.message
    response = json_response(body, 503)
    response.headers["retry-after"] = str(retry_after(request))
    return response
