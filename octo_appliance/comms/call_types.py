"""What callers and handlers see of a call: Response, IncomingRequest and the callback types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Response:
    """A call's result; ``file_path`` is the verified downloaded file (the caller owns it)."""

    result: Any
    file_path: Path | None = None


class IncomingRequest:
    """One request as its handler sees it.

    ``upload_path`` (a verified file, or None) is deleted when the handler returns: move it
    to keep it. A handler may stream events with :meth:`emit` and answer with a file through
    :meth:`respond_with_file`; cancellation by the requester arrives as ``CancelledError``.
    """

    def __init__(
        self,
        *,
        method: str,
        params: dict[str, Any],
        stream_id: int,
        peer_thumbprint: str,
        peer_hello: dict[str, Any],
        send_event: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        self.method = method
        self.params = params
        self.stream_id = stream_id
        self.peer_thumbprint = peer_thumbprint
        self.peer_hello = peer_hello
        self.upload_path: Path | None = None
        #: the SHA-256 of the upload, computed as it arrived and checked against the sender's
        #: (so a handler that needs the hash does not read the file again)
        self.upload_sha256: str | None = None
        self.response_file: Path | None = None
        self.delete_response_file = False
        self._send_event = send_event

    async def emit(self, event: dict[str, Any]) -> None:
        """Send a progress or log event to the requester, ahead of the response."""
        await self._send_event(event)

    def respond_with_file(self, path: str | Path, *, delete_after: bool = False) -> None:
        """Stream ``path`` to the requester after the handler returns (its return value is
        the response's ``result``); ``delete_after`` removes the file once it is sent."""
        self.response_file = Path(path)
        self.delete_response_file = delete_after


#: ``async def handle(request) -> result`` (the result must be JSON).
Handler = Callable[[IncomingRequest], Awaitable[Any]]
#: Called for each EVENT of a call, in order, before the call returns; may be async.
EventCallback = Callable[[dict[str, Any]], Awaitable[None] | None]
