"""Reading a server-sent-events stream (``text/event-stream``) line by line.

Only what the task log stream uses: ``id``, ``event`` and ``data`` fields, comments (the
keepalives) and blank lines that end an event. Kept apart from the HTTP code so the parsing
is tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One dispatched event; ``id`` is None when the event carried none."""

    event: str
    data: str
    id: str | None = None


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the stream's lines (without their line endings).

    An event is dispatched at the blank line that ends it; a stream cut in the middle of an
    event drops that event, as a browser's EventSource does.
    """
    kind = ""
    data: list[str] = []
    event_id: str | None = None
    for line in lines:
        if not line:
            if data or kind:
                yield Event(kind or "message", "\n".join(data), event_id)
            kind, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            continue  # a comment: the server's keepalive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value
        # "retry" and unknown fields: nothing to do for a command-line reader
