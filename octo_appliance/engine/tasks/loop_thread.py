"""An asyncio service on a private event loop in a background thread, for tools and tests
that have no loop of their own (the server runs the engine in its own loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

Step = Callable[[], Coroutine[Any, Any, None]]


class LoopThread:
    """One background thread running one event loop: :meth:`start`, then :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start(self, starting: Step, timeout: float) -> None:
        """Start the thread and run ``starting()`` in its loop, waiting for it."""
        self.thread.start()
        asyncio.run_coroutine_threadsafe(starting(), self.loop).result(timeout)

    def stop(self, stopping: Step, timeout: float) -> None:
        """Run ``stopping()`` in the loop, then end the loop and the thread."""
        asyncio.run_coroutine_threadsafe(stopping(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        self.loop.close()
