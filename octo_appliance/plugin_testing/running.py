"""The appliance's background services (agent network, transports with the built-in worker,
task engine) on an event loop in a thread of its own, for in-process tests.

The API a test drives runs in the test's thread (Starlette's TestClient); deployments it
starts run on this loop, exactly as under ``octo-appliance serve``. The transports are told
they run in a test (``TransportContext.testing``): the built-in worker runs scripts as the
test's own user instead of a dedicated account.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from octo_appliance.appliance import Appliance
from octo_appliance.services import Services, start_services


@dataclass
class RunningServices:
    """Background services started by :func:`start_in_thread`; stop with :meth:`stop`."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    services: Services

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the task engine, the transports and the agent network, then the loop."""
        try:
            asyncio.run_coroutine_threadsafe(self.services.stop(), self.loop).result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
            self.loop.close()


def start_in_thread(appliance: Appliance, timeout: float = 120.0) -> RunningServices:
    """Start the background services of ``appliance`` (its config should listen for polling
    agents on ``127.0.0.1:0``) on a new loop in a daemon thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="octo-test-services", daemon=True)
    thread.start()
    try:
        started = asyncio.run_coroutine_threadsafe(start_services(appliance, testing=True), loop)
        services = started.result(timeout)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()
        raise
    return RunningServices(loop, thread, services)
