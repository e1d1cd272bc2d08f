"""Restarts and several engines: no task is lost, none runs twice."""

from __future__ import annotations

import threading

from octo_appliance.db.base import utcnow
from octo_appliance.db.tasks import ServerTask, TaskTargetResult
from octo_appliance.engine.tasks import RESTART_MESSAGE
from octo_appliance.engine.tasks.claims import claim_tasks, release_unstarted
from octo_appliance.engine.tasks.creation import create_task
from octo_appliance.engine.tasks.log import read_lines
from octo_appliance.engine.tasks.store import append_line_now
from tests.engine.support import DEMO, task_row, wait_finished, wait_until


def _orphan(octo, node: str) -> str:
    """A task left ``executing`` by a process that died, with a line and a target running."""
    task_id = create_task(octo.appliance.vault, kind=DEMO, description="was running")
    ServerTask.update(state="executing", node=node, started_at=utcnow()).where(
        ServerTask.id == task_id
    ).execute()
    append_line_now(octo.appliance.db, octo.appliance.vault, task_id, "info", "half way")
    TaskTargetResult.create_new(
        task=task_id, target_id="tgt_1", target_name="web-1", state="executing"
    )
    return task_id


def test_a_task_running_when_the_appliance_died_is_failed_at_start(octo, make_engine, tracker):
    orphan = _orphan(octo, "node-1")
    elsewhere = _orphan(octo, "node-2")  # another node's task is that node's business
    queued = create_task(octo.appliance.vault, kind=DEMO, description="waiting", arguments={})
    engine = make_engine(node="node-1")
    assert engine.recovered == [orphan]
    task = task_row(orphan)
    assert task.state == "failed"
    assert task.error == RESTART_MESSAGE
    lines = read_lines(octo.appliance.vault, orphan, 0, 100)
    assert [(line.seq, line.message) for line in lines] == [(1, "half way"), (2, RESTART_MESSAGE)]
    assert TaskTargetResult.get(TaskTargetResult.task == orphan).state == "failed"
    assert task_row(elsewhere).state == "executing"
    # the queued task survived the restart and runs now; the orphan never runs again
    assert wait_finished(queued).state == "success"
    assert orphan not in tracker.runs
    # re-running is enqueueing it again
    again = engine.enqueue(DEMO, "was running (again)", {"lines": 1})
    assert wait_finished(again).state == "success"


def test_stopping_the_engine_fails_running_tasks_and_keeps_queued_ones(octo, make_engine, tracker):
    first = make_engine(cap=1)
    running = first.enqueue(DEMO, "running", {"gate": "never"})
    wait_until(lambda: running in tracker.runs, "the handler to start")
    queued = first.enqueue(DEMO, "queued", {"lines": 1})
    first.stop_in_thread()
    assert tracker.cancelled == [running]
    task = task_row(running)
    assert task.state == "failed"
    assert task.error == RESTART_MESSAGE
    assert task_row(queued).state == "queued"
    make_engine(cap=1)
    assert wait_finished(queued).state == "success"


def test_two_engines_on_one_database_run_each_task_once(octo, make_engine, tracker):
    engines = [make_engine(node="node-a", cap=3), make_engine(node="node-b", cap=3)]
    ids = [engines[n % 2].enqueue(DEMO, f"task {n}", {"lines": 2}) for n in range(24)]
    for task_id in ids:
        assert wait_finished(task_id).state == "success"
    assert sorted(tracker.runs) == sorted(ids)  # every task ran, and exactly once
    nodes = {task_row(task_id).node for task_id in ids}
    assert nodes <= {"node-a", "node-b"}


def test_concurrent_claims_never_share_a_task(octo):
    ids = {create_task(octo.appliance.vault, kind=DEMO, description=f"t{n}") for n in range(30)}
    barrier = threading.Barrier(3)
    claimed: dict[str, list[str]] = {}

    def claimer(node: str) -> None:
        barrier.wait()
        got: list[str] = []
        while True:
            batch = claim_tasks(octo.appliance.db, octo.appliance.vault, node, 2)
            if not batch:
                break
            got += [task.id for task in batch]
        claimed[node] = got

    threads = [threading.Thread(target=claimer, args=(f"n{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [task_id for got in claimed.values() for task_id in got]
    assert sorted(everything) == sorted(ids)
    for node, got in claimed.items():
        assert all(task_row(task_id).node == node for task_id in got)


def test_tasks_a_claim_lost_with_its_connection_took_go_back_to_the_queue(octo):
    """A claim whose commit was lost may have taken tasks the engine never got: the engine
    then hands back every task executing under its name that it does not run."""
    running = _orphan(octo, "node-1")  # one the engine does run
    lost = create_task(octo.appliance.vault, kind=DEMO, description="claimed, never started")
    ServerTask.update(state="executing", node="node-1", started_at=utcnow()).where(
        ServerTask.id == lost
    ).execute()
    elsewhere = _orphan(octo, "node-2")
    assert release_unstarted(octo.appliance.db, "node-1", [running]) == [lost]
    row = task_row(lost)
    assert (row.state, row.node, row.started_at) == ("queued", "", None)
    assert task_row(running).state == "executing"
    assert task_row(elsewhere).state == "executing"
