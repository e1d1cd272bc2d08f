"""A guard around Hypercorn's HTTP/2 side: request data that arrives after the answer is
dropped, not the connection.

Hypercorn 0.18 forgets a stream as soon as its response has ended. When the client's next
DATA frame for that stream arrives (the rest of a body the app did not read, or just the empty
frame that ends a bodyless POST: httpx sends ``content-length: 0`` and then an empty DATA frame
with END_STREAM, as a separate write), ``protocol/h2.py`` looks the stream up, raises
``KeyError``, and the connection task dies: every other request on that connection, and the
client's next one, fail with "server disconnected". That was the flake of
``tests/integration/test_agents_e2e.py`` (four bodyless ``POST .../health-check`` calls on one
connection: the first answer was complete before its END_STREAM frame arrived).
``unread_body.DrainUnreadBody`` keeps the app's answers open until the body has arrived, so a
client still sending reads them; this guard covers what it does not (a body left unread past
its drain limit, anything answered outside the app).

:class:`GuardedH2Protocol` (for ``hypercorn.protocol.H2Protocol``) acknowledges such data, so
the connection's flow-control window is not used up, and asks the client to stop sending it
with ``RST_STREAM`` ``NO_ERROR``, as RFC 9113 section 8.1 allows after a complete response.

Relies on Hypercorn 0.18 internals (pinned in pyproject.toml); tests/unit/test_h2guard.py fails
when the hook moves, tests/integration/test_early_answers.py shows it on a real connection.
"""

from __future__ import annotations

import contextlib

import h2.errors
import h2.events
import h2.exceptions
import hypercorn.protocol as hypercorn_protocol
from hypercorn.protocol.h2 import H2Protocol


class GuardedH2Protocol(H2Protocol):  # type: ignore[misc]
    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        """Pass on each event in turn; answer data for a stream Hypercorn forgot itself.

        One at a time: a stream is known once its ``RequestReceived`` has been handled, and
        its first DATA frame often comes in the same read.
        """
        for event in events:
            if (
                isinstance(event, h2.events.DataReceived | h2.events.StreamEnded)
                and event.stream_id not in self.streams
            ):
                if isinstance(event, h2.events.DataReceived):
                    self._refuse_late_data(event)
                await self._flush()
            else:
                await super()._handle_events([event])

    def _refuse_late_data(self, event: h2.events.DataReceived) -> None:
        self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if not event.stream_ended:
            # the client has more to send: ask it to stop (a closed stream needs nothing)
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.connection.reset_stream(event.stream_id, h2.errors.ErrorCodes.NO_ERROR)


def install() -> None:
    """Put the guarded class where Hypercorn looks it up; safe to call more than once."""
    setattr(hypercorn_protocol, "H2Protocol", GuardedH2Protocol)  # noqa: B010
