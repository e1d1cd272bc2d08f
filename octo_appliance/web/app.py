"""The Starlette application factory: API and portal routes, error handlers, security headers."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from octo_appliance.api import API_PREFIX, all_endpoints, build_routes
from octo_appliance.api.errors import EXCEPTION_HANDLERS
from octo_appliance.appliance import Appliance
from octo_appliance.portal.routes import Portal
from octo_appliance.web.unread_body import DrainUnreadBody

log = logging.getLogger("octo_appliance.api")

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on every request).

    It also absorbs the error a server raises from the *last* send of a response when closing
    the connection fails (Hypercorn raises the TLS close's own error, e.g. after a 413 sent
    while the client was still uploading): the response is out, so it is one debug line, not
    an "unexpected error" traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            try:
                await send(message)
            except OSError as exc:
                if message["type"] != "http.response.body" or message.get("more_body"):
                    raise  # mid-response: the app must learn the client is gone
                log.debug("%s %s: the connection closed: %r", scope["method"], scope["path"], exc)

        await self.app(scope, receive, send_with_headers)


def create_app(appliance: Appliance) -> ASGIApp:
    portal = Portal(appliance)  # at /, beside the API (docs/portal.md)
    app = Starlette(
        routes=build_routes(appliance) + portal.routes(),
        exception_handlers={**EXCEPTION_HANDLERS, HTTPException: portal.http_error},  # type: ignore[arg-type]
    )
    app.state.appliance = appliance
    app.state.endpoints = all_endpoints()
    app.state.api_prefix = API_PREFIX
    return SecurityHeaders(DrainUnreadBody(app))
