"""The engine inside the server's own event loop, behind a real Hypercorn on 127.0.0.1.

This is how ``serve`` runs it (``await engine.start()`` in the loop that also serves HTTP):
the log stream and a cancel travel over real sockets while a task runs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from octo_appliance.engine.tasks import TaskEngine
from octo_appliance.web.app import create_app
from tests.engine.support import (
    DEMO,
    demo_kinds,
    log_messages_until,
    sse_events,
    task_row,
    wait_finished,
    wait_until,
)


@dataclass
class Server:
    url: str
    engine: TaskEngine


@pytest.fixture
def server(octo, tracker) -> Iterator[Server]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    config = HypercornConfig()
    config.bind = [f"fd://{listener.detach()}"]
    config.graceful_timeout = 0.5
    engine = TaskEngine(
        octo.appliance.db, octo.appliance.vault, "node-1", kinds=demo_kinds(tracker)
    )
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        await engine.start()
        octo.appliance.task_engine = engine
        ready.set()
        try:
            await serve(create_app(octo.appliance), config, shutdown_trigger=stop.wait)
        finally:
            await engine.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield Server(f"http://127.0.0.1:{port}", engine)
    for gate in tracker.gates.values():
        gate.set()
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    loop.close()


def test_live_stream_and_cancel_over_real_sockets(octo, server, tracker):
    headers = {"X-Api-Key": octo.admin_key}
    live = server.engine.enqueue(
        DEMO, "live", {"lines": 3, "gate": "go", "after_gate_lines": 1}, created_by_name="admin"
    )
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        with client.stream("GET", f"/api/v1/tasks/{live}/log/stream") as response:
            assert response.status_code == 200
            events = sse_events(response.iter_lines())
            log_messages_until(events, "line 3")
            assert task_row(live).state == "executing"  # it arrived while the task ran
            tracker.gate("go").set()
            rest = [event for event in events if "event" in event]
        assert rest[-1]["event"] == "end"
        assert json.loads(rest[-1]["data"])["state"] == "success"
        assert "after 1" in [json.loads(e["data"])["message"] for e in rest if e["event"] == "log"]

        held = server.engine.enqueue(DEMO, "held", {"gate": "never"})
        wait_until(lambda: held in tracker.runs, "the held task to start")
        response = client.post(f"/api/v1/tasks/{held}/cancel")
        assert response.status_code == 200, response.text
        assert wait_finished(held).state == "canceled"
        assert tracker.cancelled == [held]
