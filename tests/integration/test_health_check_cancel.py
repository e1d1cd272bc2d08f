"""A health check of a polling target whose agent never connected, ending while the
database is write-locked for longer than SQLite's busy timeout (what a 5,000-agent run did:
hundreds of checks failing at once beside thousands of registrations).

Issue 14: such a check stayed ``executing`` for ever and ignored CANCEL. Its handler ended,
but recording its end failed with "database is locked"; the engine then forgot the task
(the row stayed ``executing`` until a restart) and a cancel had nothing left to stop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from octo_appliance.db.connection import SQLITE_FILE_NAME
from tests.fleet import Fleet, running_fleet, wait_until

#: longer than the appliance's SQLite busy timeout (10 s), twice over: both the check's
#: target result and its end meet the lock
LOCK_SECONDS = 25.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    env = {"OCTO_PICKUP_TIMEOUT_SECONDS": "4"}
    with running_fleet(tmp_path_factory.mktemp("stuck"), serve_env=env) as fleet:
        yield fleet


def checks_of(fleet: Fleet, target_id: str) -> list[dict[str, Any]]:
    items = fleet.call("GET", "/tasks", params={"kind": "health-check"})["items"]
    tasks = [fleet.task(item["id"]) for item in items]
    return [t for t in tasks if any(r["target_id"] == target_id for r in t["targets"])]


def test_cancel_a_check_whose_agent_never_connected(fleet: Fleet) -> None:
    agent = fleet.register("never-1", "polling")  # its agent is never started
    first = wait_until(lambda: checks_of(fleet, agent.target_id), 30, "the first check")[0]
    fleet.call("POST", f"/tasks/{first['id']}/cancel")
    assert fleet.wait_task(first["id"], timeout=60)["state"] == "canceled"


def test_a_check_ending_while_the_database_is_locked_still_ends(fleet: Fleet) -> None:
    agent = fleet.register("locked-1", "polling")  # its agent is never started
    first = wait_until(lambda: checks_of(fleet, agent.target_id), 30, "the first check")[0]
    fleet.call("POST", f"/tasks/{first['id']}/cancel")
    fleet.wait_task(first["id"], timeout=60)

    task_id = fleet.call("POST", f"/targets/{agent.target_id}/health-check", 202)["task_id"]
    wait_until(lambda: fleet.task(task_id)["state"] == "executing", 30, "the check to start")
    db = sqlite3.connect(fleet.data_dir / SQLITE_FILE_NAME, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")  # the check's pickup timeout (4 s) ends under the lock
        time.sleep(LOCK_SECONDS)
        db.execute("ROLLBACK")
    finally:
        db.close()

    fleet.call("POST", f"/tasks/{task_id}/cancel")
    task = fleet.wait_task(task_id, timeout=90)
    assert task["state"] in ("failed", "canceled"), task
    assert {row["state"] for row in task["targets"]} <= {"failed", "canceled"}, task
