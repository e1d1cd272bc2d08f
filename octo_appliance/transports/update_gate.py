"""Calls to an agent wait while that agent updates itself, and are counted while they run.

The update coordinator (:mod:`octo_appliance.engine.agent_updates`) closes a target's gate,
waits until no call to it is in flight (the agent is idle from the appliance's side), updates
it, and opens the gate again. A call that meets a closed gate waits (it does not fail) up to
``wait_seconds``, then goes ahead whatever build answers: an update never holds a deployment
for longer than that bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

#: told once when a call starts waiting for an update (it logs that on the task)
OnWait = Callable[[], Awaitable[None]]
WAIT_MESSAGE = "waiting for the agent on this target to finish updating itself"


def notice_to(on_event: Callable[[dict[str, Any]], Awaitable[None] | None] | None) -> OnWait:
    """An :data:`OnWait` that tells a call's event stream (the task log) why it waits."""

    async def notice() -> None:
        if on_event is not None:
            event = {"type": "log", "level": "info", "message": WAIT_MESSAGE, "stream": "agent"}
            result = on_event(event)
            if inspect.isawaitable(result):
                await result

    return notice


class UpdateGate:
    def __init__(self, wait_seconds: float = 300.0) -> None:
        self.wait_seconds = wait_seconds
        self._closed: dict[str, asyncio.Event] = {}
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._idle: dict[str, asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def call(self, thumbprint: str, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        """Around one call to the agent ``thumbprint``: wait while it updates, count it."""
        opened = self._closed.get(thumbprint)
        if opened is not None:
            if on_wait is not None:
                await on_wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.wait_seconds):
                    await opened.wait()
        self._in_flight[thumbprint] += 1
        try:
            yield
        finally:
            self._in_flight[thumbprint] -= 1
            if self._in_flight[thumbprint] <= 0:
                del self._in_flight[thumbprint]
                idle = self._idle.pop(thumbprint, None)
                if idle is not None:
                    idle.set()

    def is_closed(self, thumbprint: str) -> bool:
        return thumbprint in self._closed

    def close(self, thumbprint: str) -> None:
        """New calls to this agent wait from now on."""
        self._closed.setdefault(thumbprint, asyncio.Event())

    def open(self, thumbprint: str) -> None:
        """Let the waiting calls go."""
        opened = self._closed.pop(thumbprint, None)
        if opened is not None:
            opened.set()

    async def drained(self, thumbprint: str, timeout: float) -> bool:
        """Whether every call in flight to this agent ended within ``timeout`` seconds."""
        if not self._in_flight.get(thumbprint):
            return True
        idle = self._idle.setdefault(thumbprint, asyncio.Event())
        try:
            async with asyncio.timeout(timeout):
                await idle.wait()
        except TimeoutError:
            return False
        return True
