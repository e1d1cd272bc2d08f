"""Turn every failure into the one JSON error shape ``{"error": {code, message, details}}``.

A client that goes away before its request was read (``ClientDisconnect``) and a body over
the limit (413) are routine: one log line each, never an "unexpected error" traceback.
"""

from __future__ import annotations

import logging

import peewee
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from octo_appliance.api.routing import json_response
from octo_appliance.exceptions import (
    ApiError,
    Conflict,
    MethodNotAllowed,
    NotFound,
    OctoError,
    PayloadTooLarge,
)

log = logging.getLogger("octo_appliance.api")

_HTTP_CLASSES: dict[int, type[ApiError]] = {404: NotFound, 405: MethodNotAllowed}


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if isinstance(exc, PayloadTooLarge):
        log.info("413 for %s %s: %s", request.method, request.url.path, exc.message)
    return json_response(exc.to_json(), exc.status_code)


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
    return json_response(error.to_json(), exc.status_code)


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


EXCEPTION_HANDLERS = {
    ApiError: api_error,
    ClientDisconnect: client_disconnect,
    HTTPException: http_error,
    peewee.IntegrityError: integrity_error,
    OctoError: octo_error,
    Exception: unexpected_error,
}
