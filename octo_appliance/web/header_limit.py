"""One limit on a request's header section, the same over HTTP/1.1, HTTP/2 and HTTP/3.

Each protocol bounds it where it parses (server.py sets Hypercorn's HTTP/1.1 and HTTP/2
limits to :data:`HEADER_SECTION_LIMIT`, h3guard.py enforces it for HTTP/3), but those limits
measure differently: h11 only counts a request that arrived in more than one read, so a
slightly larger one that arrived at once got through. :class:`HeaderSectionLimit` applies the
one rule to every request the application sees: the header list counted as HTTP/2 and HTTP/3
count it (name + value + 32 bytes per field), above the limit answered 431.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from octo_appliance.exceptions import ApiError

#: The largest request header section accepted (HTTP/1.1 and HTTP/3 answer 431 above it,
#: HTTP/2 closes the connection). 64 KiB is Hypercorn's HTTP/2 default; API keys and session
#: cookies are a few hundred bytes.
HEADER_SECTION_LIMIT = 64 * 1024


class HeaderSectionTooLarge(ApiError):
    status_code = 431
    code = "header_section_too_large"


def too_large() -> HeaderSectionTooLarge:
    return HeaderSectionTooLarge(
        f"the request's header section is larger than {HEADER_SECTION_LIMIT} bytes",
        hint="send fewer or shorter headers (cookies, custom headers)",
    )


def header_list_size(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The size HTTP/2 (RFC 9113 section 6.5.2) and HTTP/3 give a header list."""
    return sum(len(name) + len(value) + 32 for name, value in headers)


def error_body(error: ApiError) -> bytes:
    return json.dumps(error.to_json()).encode()


class HeaderSectionLimit:
    """Pure ASGI middleware answering 431 to a request over :data:`HEADER_SECTION_LIMIT`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if header_list_size(scope["headers"]) <= HEADER_SECTION_LIMIT:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1009})
            return
        error = too_large()
        body = error_body(error)
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
