"""The task engine through a PostgreSQL outage: a task that ends while the database is away is
stored with its real outcome once it is back, and the outage is logged once, not per pass.

The appliance reaches PostgreSQL through a TCP proxy the test takes down and brings back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from octo_appliance.db.tasks import TaskTargetResult
from octo_appliance.engine.tasks.log import read_lines
from octo_appliance.testing import OctoTestAppliance
from tests.conftest import reset_pg_schema
from tests.engine.support import DEMO, wait_finished, wait_until
from tests.pg_proxy import PgProxy

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxy(pg_url: str) -> Iterator[PgProxy]:
    reset_pg_schema(pg_url)
    with PgProxy(pg_url) as running:
        yield running


@pytest.fixture
def octo(
    octo_appliance_factory: Callable[..., OctoTestAppliance], proxy: PgProxy
) -> OctoTestAppliance:
    return octo_appliance_factory(database=proxy.url)


def test_a_task_ending_during_an_outage_is_stored_when_the_database_returns(
    octo, make_engine, tracker, proxy, caplog
):
    caplog.set_level(logging.DEBUG, logger="octo_appliance")
    engine = make_engine()
    target = {"id": "tgt_1", "name": "web-1", "outputs": {"Answer": "42"}}
    task_id = engine.enqueue(
        DEMO, "ends during the outage", {"gate": "g", "targets": [target], "after_gate_lines": 3}
    )
    wait_until(
        lambda: TaskTargetResult.select().where(TaskTargetResult.task == task_id).exists(),
        "the handler to reach its gate",
    )
    proxy.stop()
    tracker.gate("g").set()  # the handler finishes while the database is away
    # its target result waits for the database (the handler with it), its lines are kept
    wait_until(lambda: engine.log.unsaved >= 3, "the engine to meet the outage")
    proxy.start()
    task = wait_finished(task_id)
    assert task.state == "success", task.error
    messages = [line.message for line in read_lines(octo.appliance.vault, task_id, 0, 100)]
    assert messages[-4:] == ["after 1", "after 2", "after 3", "The task succeeded."]
    result = TaskTargetResult.get(TaskTargetResult.task == task_id)
    assert (result.state, result.exit_code) == ("success", 0)
    assert result.output_variables[0]["value"] == "42"
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("the database is unavailable" in m for m in logged) == 1, logged
    # the claim loop's passes and the log writer's retries stay quiet
    assert not [m for m in logged if "claiming" in m or "storing" in m], logged
