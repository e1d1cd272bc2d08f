"""Let a client that is still sending its body receive an early answer (413, 401, 507...).

When the app answers before it has read the whole request body, Hypercorn (0.18) closes the
HTTP/2 (or HTTP/3) stream as soon as the response ends; the client's DATA frames that follow
then hit a stream Hypercorn no longer knows, and it drops the whole connection. An HTTP/2
client such as httpx, which sends the entire body before it reads the response, so never sees
the answer: it gets "server disconnected", or waits for flow-control credit until its timeout.

:class:`DrainUnreadBody` sends the answer at once, but holds back the end of the response
until the rest of the request body has been received (and thrown away, nothing is parsed or
stored), so the stream stays open and the client, having sent everything, reads the answer.
It reads at most :data:`DRAIN_LIMIT` further bytes (and skips draining when the declared
``Content-Length`` leaves more than that unread): past that ``h2guard`` asks the client to stop
sending (HTTP/2), the price of a client sending gigabytes to a request already refused.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the most body bytes read and discarded after an early answer
DRAIN_LIMIT = 1024 * 1024 * 1024
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: HTTP/1.1 is left alone: there Hypercorn closes the connection after an early answer, and
#: clients read the answer when their write fails
_MULTIPLEXED = frozenset({"2", "3"})


class _Body:
    """How much of the request body the app received, and whether all of it."""

    def __init__(self, scope: Scope) -> None:
        self.received = 0
        self.complete = False
        self.declared: int | None = None
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit():
                self.declared = int(value)

    def see(self, message: Message) -> None:
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.complete = True

    def worth_draining(self) -> bool:
        if self.complete:
            return False
        return self.declared is None or self.declared - self.received <= DRAIN_LIMIT


class DrainUnreadBody:
    """Pure ASGI middleware (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("http_version") not in _MULTIPLEXED
            or scope.get("method") in _NO_BODY_METHODS
        ):
            await self.app(scope, receive, send)
            return
        body = _Body(scope)

        async def tracked_receive() -> Message:
            message = await receive()
            body.see(message)
            return message

        async def send_then_drain(message: Message) -> None:
            final = message["type"] == "http.response.body" and not message.get("more_body")
            if not final or not body.worth_draining():
                await send(message)
                return
            await send({**message, "more_body": True})  # the answer goes out now
            start = body.received
            while not body.complete and body.received - start <= DRAIN_LIMIT:
                await tracked_receive()
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app(scope, tracked_receive, send_then_drain)
