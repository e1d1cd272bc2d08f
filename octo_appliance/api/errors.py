"""Turn every failure into the one JSON error shape ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging

import peewee
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from octo_appliance.api.routing import json_response
from octo_appliance.disk_space import storage_error
from octo_appliance.exceptions import (
    ApiError,
    Conflict,
    MethodNotAllowed,
    NotFound,
    OctoError,
    TooManyRequests,
)

log = logging.getLogger("octo_appliance.api")

_HTTP_CLASSES: dict[int, type[ApiError]] = {404: NotFound, 405: MethodNotAllowed}


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = json_response(exc.to_json(), exc.status_code)
    if isinstance(exc, TooManyRequests):
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
    """Deliberate non-API failures (vault, database): a 503/500 with the message, no trace."""
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
    HTTPException: http_error,
    peewee.IntegrityError: integrity_error,
    OctoError: octo_error,
    OSError: storage_or_unexpected,
    peewee.OperationalError: storage_or_unexpected,
    Exception: unexpected_error,
}
