"""A task engine for API tests of deployments: a real :class:`TaskEngine` whose ``deployment``
handler (and any other kinds asked for) holds each task open until the test opens the gate.

The real deployment executor is tested in ``tests/engine``; the API tests need the queue, the
task rows and a running task (its log open), not targets and runners.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from octo_appliance.engine.lifecycles import DEPLOYMENT_TASK_KIND
from octo_appliance.engine.tasks import RunningTask, TaskEngine, TaskKindRegistry


@dataclass
class HeldEngine:
    engine: TaskEngine
    gate: threading.Event
    arguments: list[dict[str, Any]] = field(default_factory=list)

    def release(self) -> None:
        """Let every held task (and every later one) finish successfully."""
        self.gate.set()


@contextmanager
def held_engine(octo: Any, kinds: Iterable[str] = (DEPLOYMENT_TASK_KIND,)) -> Iterator[HeldEngine]:
    """Attach a started engine to ``octo.appliance`` for the duration."""
    gate = threading.Event()
    held: HeldEngine | None = None

    async def run(task: RunningTask) -> None:
        assert held is not None
        held.arguments.append(dict(task.arguments))
        while not gate.is_set():
            await asyncio.sleep(0.01)

    registry = TaskKindRegistry()
    for kind in kinds:
        registry.register(kind, run)
    engine = TaskEngine(
        octo.appliance.db, octo.appliance.vault, "api-test", kinds=registry, poll_interval=0.2
    )
    held = HeldEngine(engine, gate)
    engine.start_in_thread()
    octo.appliance.task_engine = engine
    try:
        yield held
    finally:
        gate.set()
        engine.stop_in_thread()
        octo.appliance.task_engine = None
