"""Fixtures: task engines on the parametrised backend, running demo handlers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from octo_appliance.engine.tasks import TaskEngine
from octo_appliance.testing import OctoTestAppliance
from tests.engine.deploy_rig import rig  # noqa: F401  (the deployment rig, for every module)
from tests.engine.schema_shape import Opener, empty_databases
from tests.engine.support import Tracker, demo_kinds


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    tracker = Tracker()
    yield tracker
    for gate in tracker.gates.values():  # let any handler still waiting finish
        gate.set()


@pytest.fixture
def make_engine(octo: OctoTestAppliance, tracker: Tracker) -> Iterator[Callable[..., TaskEngine]]:
    """``make_engine(cap=5, node="node-1", start=True)``: an engine in its own thread."""
    engines: list[TaskEngine] = []

    def make(cap: int = 5, node: str = "node-1", start: bool = True) -> TaskEngine:
        engine = TaskEngine(
            octo.appliance.db,
            octo.appliance.vault,
            node,
            task_cap=cap,
            kinds=demo_kinds(tracker),
            poll_interval=0.2,
        )
        if start:
            engine.start_in_thread()
        engines.append(engine)
        return engine

    yield make
    for gate in tracker.gates.values():
        gate.set()
    for engine in engines:
        engine.stop_in_thread()


@pytest.fixture
def engine(make_engine: Callable[..., TaskEngine]) -> TaskEngine:
    return make_engine()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def open_empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """``open_empty(name)``: a new, empty database of the parametrised backend."""
    yield from empty_databases(request, tmp_path, request.param)


@pytest.fixture
def open_empty_postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """``open_empty_postgresql(name)``: a new, empty PostgreSQL database."""
    yield from empty_databases(request, tmp_path, "postgresql")
