"""Turn every failure into the one JSON error shape ``{"error": {code, message, details}}``.

Which status each failure gets (the most specific handler wins, by the exception's class):

- an :class:`~octo_appliance.exceptions.ApiError`: its own status, code and hint;
- :class:`~octo_appliance.exceptions.DatabaseUnavailable`: 503 with ``Retry-After`` (the
  database went away; the appliance reconnects by itself);
- a unique constraint the handler did not pre-check: 409;
- any other :class:`~octo_appliance.exceptions.OctoError` (the vault, a database that cannot
  be migrated): 500 with its message;
- a full disk (``OSError`` ENOSPC, a "disk full" from the database): 507;
- a client that went away before its request was read (``ClientDisconnect``): one log line;
  a 413 likewise (routine, never an "unexpected error" traceback);
- anything else: 500 with no detail; the trace goes to the server log only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import peewee
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from octo_appliance.api.routing import json_response
from octo_appliance.db.reconnect import DEFAULT_CONNECT_TIMEOUT, RETRY_HINT
from octo_appliance.exceptions import (
    ApiError,
    Conflict,
    DatabaseUnavailable,
    MethodNotAllowed,
    NotFound,
    OctoError,
    PayloadTooLarge,
    ServiceUnavailable,
)
from octo_appliance.filesystem.disk_space import storage_error

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance

log = logging.getLogger("octo_appliance.api")

_HTTP_CLASSES: dict[int, type[ApiError]] = {404: NotFound, 405: MethodNotAllowed}


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if isinstance(exc, PayloadTooLarge):
        log.info("413 for %s %s: %s", request.method, request.url.path, exc.message)
    response = json_response(exc.to_json(), exc.status_code)
    response.headers.update(exc.headers())
    return response


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (each method is its own route, so the one
    route that raised the 405 knows only its own)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return ", ".join(sorted(methods))


def retry_after(request: Request) -> int:
    """Seconds a client should wait: one connection attempt of the appliance."""
    appliance: Appliance | None = getattr(request.app.state, "appliance", None)
    if appliance is None:
        return DEFAULT_CONNECT_TIMEOUT
    return appliance.config.database_connect_timeout


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """The database went away: 503 and Retry-After, not a 500. Not logged per request: the
    database status logs the outage once (``db/reconnect.py``)."""
    assert isinstance(exc, DatabaseUnavailable)
    message = exc.message
    if exc.outcome_unknown:
        hint = "check whether the change was made before making it again; " + RETRY_HINT
    else:
        hint = "the request was not carried out; " + RETRY_HINT
    error = ServiceUnavailable(message, retry_after=retry_after(request), hint=hint)
    return await api_error(request, error)


async def client_disconnect(request: Request, exc: Exception) -> Response:
    """The client left before its request body was read: nobody is there to answer."""
    log.info(
        "%s %s: the client disconnected before its request was read",
        request.method,
        request.url.path,
    )
    return Response(status_code=499)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    cls = _HTTP_CLASSES.get(exc.status_code, ApiError)
    message = {
        404: f"no such endpoint: {request.method} {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    error = cls(message, hint="see GET /api/v1/openapi.json for the endpoints")
    response = json_response(error.to_json(), exc.status_code)
    if exc.status_code == 405:
        response.headers["Allow"] = _allowed_methods(request)
    return response


async def integrity_error(request: Request, exc: Exception) -> Response:
    """A unique constraint the handler did not pre-check: still a 409, never a 500."""
    error = Conflict(
        "the change conflicts with an existing resource (a name or link already in use)",
        hint="choose another name, or update the existing resource",
    )
    return json_response(error.to_json(), 409)


async def octo_error(request: Request, exc: Exception) -> Response:
    """Deliberate non-API failures (vault, a database that cannot be migrated): a 500 with the
    message, no trace (an unavailable database is a 503: :func:`database_unavailable`)."""
    assert isinstance(exc, OctoError)
    log.error("request failed: %s", exc)
    body = {"error": {"code": "server_error", "message": exc.message, "details": []}}
    return json_response(body, 500)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    body = {
        "error": {
            "code": "server_error",
            "message": "the appliance hit an unexpected error; it is in the server log",
            "details": [],
        }
    }
    return json_response(body, 500)


async def storage_or_unexpected(request: Request, exc: Exception) -> Response:
    """A full disk (a file write's ENOSPC, SQLite's or PostgreSQL's "disk full") is a 507
    naming the data dir and its free space, logged as one line; anything else a 500."""
    data_dir = request.app.state.appliance.data_dir
    full = storage_error(exc, data_dir, f"handling {request.method} {request.url.path}")
    if full is None:
        return await unexpected_error(request, exc)
    log.error("%s %s refused: %s", request.method, request.url.path, full.message)
    return json_response(full.to_json(), full.status_code)


EXCEPTION_HANDLERS = {
    ApiError: api_error,
    ClientDisconnect: client_disconnect,
    HTTPException: http_error,
    peewee.IntegrityError: integrity_error,
    DatabaseUnavailable: database_unavailable,
    OctoError: octo_error,
    OSError: storage_or_unexpected,
    peewee.OperationalError: storage_or_unexpected,
    Exception: unexpected_error,
}
