"""A package upload posted by the plain form (no JavaScript): the CSRF field, then the file.

The API's upload reads the body as it streams (the package never whole in memory), so the
form's CSRF token cannot come from reading the form first. The browser sends fields in the
form's order, so the portal reads only the start of the body, up to the headers of the
``file`` part, takes the small fields before it (``csrf_token``, ``replace``), checks the
token exactly as every form's, then hands the API's ``upload_package`` a request whose body is
what was read followed by the rest, still streaming.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from octo_appliance.exceptions import BadRequest
from octo_appliance.feed.upload import FILE_FIELD, boundary_of

#: the form's small fields come first; more than this before the file part is not our form
PEEK_LIMIT = 64 * 1024
Message = MutableMapping[str, Any]


class _Fields:
    """Collects the small parts before the ``file`` part."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.file_reached = False
        self._header = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._header.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda d, s, e: self._data.extend(d[s:e]),
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._headers, self._data = {}, bytearray()

    def _header_end(self) -> None:
        self._headers[bytes(self._header).strip().lower()] = bytes(self._value).strip()
        self._header.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _kind, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", errors="replace")
        if self._name == FILE_FIELD:
            self.file_reached = True

    def _end(self) -> None:
        if not self.file_reached and self._name:
            self.values[self._name] = self._data.decode("utf-8", errors="replace")


async def peek_fields(request: Request) -> tuple[dict[str, str], Request]:
    """The form fields before the file, and the request to give the API's upload."""
    fields = _Fields()
    boundary = boundary_of(request.headers.get("content-type", ""))
    parser = MultipartParser(boundary, fields.callbacks())  # type: ignore[arg-type]
    read: list[bytes] = []
    size, more = 0, True
    while more and not fields.file_reached:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        read.append(body)
        size += len(body)
        try:
            parser.write(body)
        except Exception as exc:  # python-multipart's parse errors: a malformed body
            raise BadRequest(f"the form's body is malformed: {str(exc)[:200]}") from None
        if size > PEEK_LIMIT and not fields.file_reached:
            raise BadRequest(
                "the upload form's fields before the file are too long",
                hint="use the portal's upload form, or the API: POST /api/v1/packages",
            )
    return fields.values, Request(request.scope, _replay(b"".join(read), more, request.receive))


def _replay(
    head: bytes, more: bool, receive: Callable[[], Awaitable[Message]]
) -> Callable[[], Awaitable[Message]]:
    pending = [head]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": more}
        return await receive()

    return replayed
