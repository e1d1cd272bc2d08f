"""Hypercorn's HTTP/2: request data that arrives after the response is complete.

When the app answers before it read the whole body (a 413 on an upload over the limit, a 401
on an upload), Hypercorn 0.18 forgets the stream, and the client's next DATA frame for it
raises ``KeyError`` in ``H2Protocol._handle_events``. That ends the whole connection, every
other request multiplexed on it included, and asyncio logs an "Unhandled exception in
client_connected_cb" traceback. (Hypercorn already tolerates the same for END_STREAM.) The
same happens without any body: httpx sends a bodyless POST as ``content-length: 0`` and then,
as a separate write, an empty DATA frame with END_STREAM; when the answer is complete before
that frame arrives, the connection died and the client's next request failed with "server
disconnected" (the flake of ``tests/integration/test_agents_e2e.py``'s four bodyless
``POST .../health-check`` calls on one connection).

:class:`GuardedH2Protocol` discards such data and hands it back to flow control, so the
client can finish sending and then read the answer (httpx, for one, reads the response only
after sending the whole body, and hangs if the stream is reset with ``NO_ERROR`` as RFC 9113
section 8.1 suggests). Past :data:`LATE_DATA_BUDGET` bytes it resets the stream (``CANCEL``):
the client then fails at once instead of uploading gigabytes to be thrown away. Either way the
connection and its other streams carry on. :func:`install` puts it where Hypercorn looks.
"""

from __future__ import annotations

import logging
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import hypercorn.protocol as hypercorn_protocol
from hypercorn.protocol.h2 import H2Protocol

log = logging.getLogger(__name__)

#: request bytes per stream discarded after the response before the stream is reset
LATE_DATA_BUDGET = 8 * 1024 * 1024


class GuardedH2Protocol(H2Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: request bytes discarded per stream answered before its body was read
        self._late_bytes: dict[int, int] = {}

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        late = self._late_bytes
        batch: list[h2.events.Event] = []
        for event in events:
            if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                late.pop(event.stream_id, None)
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                if batch:  # the stream may be created by an event still in the batch
                    await super()._handle_events(batch)
                    batch = []
                if event.stream_id not in self.streams:
                    self._discard_late_data(event, late)
                    continue
            batch.append(event)
        if batch:
            await super()._handle_events(batch)
        else:
            await self._flush()

    def _discard_late_data(self, event: h2.events.DataReceived, late: dict[int, int]) -> None:
        stream_id = event.stream_id
        self.connection.acknowledge_received_data(event.flow_controlled_length, stream_id)
        late[stream_id] = late.get(stream_id, 0) + event.flow_controlled_length
        if late[stream_id] <= LATE_DATA_BUDGET:
            return
        del late[stream_id]
        try:
            self.connection.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        except h2.exceptions.ProtocolError:  # already closed or reset: nothing more to say
            return
        log.debug("HTTP/2 stream %d: answered, and its body keeps coming: reset it", stream_id)


def install() -> None:
    """Make Hypercorn use :class:`GuardedH2Protocol`; safe to call more than once."""
    setattr(hypercorn_protocol, "H2Protocol", GuardedH2Protocol)  # noqa: B010
