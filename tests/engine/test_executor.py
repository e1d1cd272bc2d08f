"""The executor: results, the task cap, cancel, timeouts and failures."""

from __future__ import annotations

import inspect
from datetime import datetime

import pytest

from octo_appliance.api.tasks import enqueue_for_request
from octo_appliance.db.tasks import ServerTask, TaskTargetResult
from octo_appliance.engine.tasks import TaskEngine
from octo_appliance.engine.tasks.creation import create_task
from octo_appliance.engine.tasks.log import read_lines
from tests.engine.support import DEMO, task_row, wait_finished, wait_state, wait_until


def messages(octo, task_id):
    return [line.message for line in read_lines(octo.appliance.vault, task_id, 0, 10_000)]


def test_success_with_per_target_results(octo, engine):
    targets = [
        {"id": "tgt_1", "name": "web-1", "exit_code": 0, "outputs": {"Version": "1.2"}},
        {"id": "tgt_2", "name": "web-2", "exit_code": 0},
    ]
    task_id = engine.enqueue(
        DEMO, "two targets", {"lines": 4, "targets": targets}, created_by_name="admin"
    )
    task = wait_finished(task_id)
    assert task.state == "success"
    assert task.error == ""
    assert task.node == "node-1"
    assert task.started_at is not None and task.finished_at >= task.started_at
    assert task.summary == {"targets": 2, "states": {"success": 2}}
    results = {
        r.target_name: r for r in TaskTargetResult.select().where(TaskTargetResult.task == task_id)
    }
    assert results["web-1"].exit_code == 0
    assert results["web-1"].output_variables == [
        {"name": "Version", "value": "1.2", "sensitive": False}
    ]
    assert results["web-2"].finished_at >= results["web-2"].started_at


def test_the_cap_limits_concurrent_tasks(octo, make_engine, tracker):
    engine = make_engine(cap=2)
    ids = [engine.enqueue(DEMO, f"wait {n}", {"gate": "cap"}) for n in range(5)]
    wait_until(lambda: tracker.executing() == 2, "two tasks to run")
    states = [task_row(task_id).state for task_id in ids]
    assert states.count("executing") == 2
    assert states.count("queued") == 3
    # the oldest are claimed first
    assert states[:2] == ["executing", "executing"]
    tracker.gate("cap").set()
    for task_id in ids:
        assert wait_finished(task_id).state == "success"
    assert tracker.highest == 2
    assert sorted(tracker.runs) == sorted(ids)


def test_cancel_a_queued_task(octo, make_engine, tracker):
    engine = make_engine(cap=1)
    running = engine.enqueue(DEMO, "blocker", {"gate": "block"})
    wait_state(running, "executing")
    queued = engine.enqueue(DEMO, "never runs", {"lines": 1})
    assert engine.cancel(queued, "alice") == "canceled"
    task = task_row(queued)
    assert task.state == "canceled"
    assert task.canceled_by == "alice"
    assert messages(octo, queued) == ["The task was canceled by alice before it started."]
    tracker.gate("block").set()
    assert wait_finished(running).state == "success"
    assert queued not in tracker.runs


def test_cancel_an_executing_task(octo, engine, tracker):
    task_id = engine.enqueue(
        DEMO, "long", {"gate": "never", "targets": [{"id": "tgt_1", "name": "web-1"}]}
    )
    wait_until(lambda: task_id in tracker.runs, "the handler to start")
    assert engine.cancel(task_id, "bob") == "requested"
    task = wait_finished(task_id)
    assert task.state == "canceled"
    assert task.error == "canceled by bob"
    assert tracker.cancelled == [task_id]
    log = messages(octo, task_id)
    assert "Cancel requested by bob; stopping the task." in log
    assert log[-1] == "The task was canceled by bob."
    result = TaskTargetResult.get(TaskTargetResult.task == task_id)
    assert result.state == "canceled"
    assert engine.cancel(task_id, "bob") is None  # finished: nothing to cancel


def test_cancel_flagged_by_another_process(octo, engine, tracker):
    task_id = engine.enqueue(DEMO, "long", {"gate": "never"})
    wait_until(lambda: task_id in tracker.runs, "the handler to start")
    # another node or a CLI only sets the flag in the database
    ServerTask.update(cancel_requested=True, canceled_by="carol").where(
        ServerTask.id == task_id
    ).execute()
    assert wait_finished(task_id).state == "canceled"
    assert tracker.cancelled == [task_id]


def test_timeout(octo, engine, tracker):
    task_id = engine.enqueue(DEMO, "slow", {"gate": "never"}, timeout_seconds=1)
    task = wait_finished(task_id)
    assert task.state == "timed_out"
    assert task.error == "the task ran longer than its timeout of 1 s"
    assert tracker.cancelled == [task_id]
    assert messages(octo, task_id)[-1].startswith("The task timed out")


def test_task_failed_and_unexpected_errors(octo, engine):
    failed = engine.enqueue(DEMO, "fails", {"fail": "the service did not start"})
    crashed = engine.enqueue(DEMO, "crashes", {"crash": True})
    assert wait_finished(failed).error == "the service did not start"
    task = wait_finished(crashed)
    assert task.state == "failed"
    assert task.error.startswith("unexpected error (RuntimeError)")
    assert messages(octo, failed)[-1] == "The task failed: the service did not start"


def test_a_failed_target_fails_the_task_and_the_others_complete(octo, engine):
    targets = [
        {"id": "tgt_1", "name": "web-1"},
        {"id": "tgt_2", "name": "web-2", "state": "failed", "exit_code": 3},
        {"id": "tgt_3", "name": "web-3"},
    ]
    task = wait_finished(engine.enqueue(DEMO, "mixed", {"targets": targets}))
    assert task.state == "failed"
    assert task.error == "1 of 3 target(s) did not succeed"
    assert task.summary == {"targets": 3, "states": {"failed": 1, "success": 2}}
    codes = {
        r.target_name: (r.state, r.exit_code)
        for r in TaskTargetResult.select().where(TaskTargetResult.task == task.id)
    }
    assert codes == {"web-1": ("success", 0), "web-2": ("failed", 3), "web-3": ("success", 0)}


def test_unknown_kinds(octo, engine):
    with pytest.raises(ValueError, match="no handler"):
        engine.enqueue("no-such-kind", "x")
    # a task of a kind this node lacks (queued by a newer node, say) fails with a reason
    task_id = create_task(octo.appliance.vault, kind="from-the-future", description="x")
    engine.wake()
    task = wait_finished(task_id)
    assert task.state == "failed"
    assert task.error == "no handler for task kind 'from-the-future' on node node-1"


def test_sensitive_arguments_that_do_not_open_fail_the_task(octo, make_engine, tracker):
    task_id = create_task(
        octo.appliance.vault, kind=DEMO, description="x", sensitive_arguments={"password": "p"}
    )
    other = create_task(octo.appliance.vault, kind=DEMO, description="y")
    sealed = ServerTask.get_by_id(other).aad("sealed_arguments")
    # a value sealed for another row does not open here
    ServerTask.update(sealed_arguments=octo.appliance.vault.seal("{}", sealed)).where(
        ServerTask.id == task_id
    ).execute()
    make_engine()
    task = wait_finished(task_id)
    assert task.state == "failed"
    assert task.error.startswith("its sensitive arguments do not decrypt")
    assert messages(octo, task_id) == [task.error]
    assert task_id not in tracker.runs
    assert wait_finished(other).state == "success"


def test_enqueue_and_create_task_take_one_parameter_set():
    """enqueue, the API's enqueue_for_request and create_task cannot drift apart: after what
    each binds (engine, request, vault) their parameters are the same."""

    def parameters(function, bound):
        return list(inspect.signature(function, eval_str=True).parameters.values())[bound:]

    expected = parameters(create_task, 1)
    assert parameters(TaskEngine.enqueue, 1) == expected
    assert parameters(enqueue_for_request, 1) == expected


def test_enqueue_stores_every_option(octo, engine):
    later = datetime(2100, 1, 1)
    task_id = engine.enqueue(
        DEMO,
        "not yet",
        {"lines": 1},
        created_by_name="ops",
        timeout_seconds=30,
        not_before=later,
    )
    row = ServerTask.get_by_id(task_id)
    assert (row.created_by_name, row.timeout_seconds, row.not_before) == ("ops", 30, later)
    assert row.state == "queued"


def test_an_unknown_task_option_is_refused(octo, engine):
    with pytest.raises(TypeError, match="unknown task options: timeout"):
        engine.enqueue(DEMO, "x", {}, timeout=5)  # type: ignore[call-arg]


def test_a_burst_of_target_results_is_stored_together_in_call_order(octo):
    """The engine writes the results that queued up behind a save in one transaction: each
    target gets one row, and a later result of the same target wins over an earlier one."""
    from octo_appliance.engine.tasks import store
    from octo_appliance.engine.tasks.kinds import OutputVariable

    task_id = create_task(octo.appliance.vault, kind=DEMO, description="burst")
    burst = [
        store.TargetResult("tgt_1", "web-1", "executing"),
        store.TargetResult("tgt_2", "web-2", "success", exit_code=0),
        store.TargetResult(
            "tgt_1",
            "web-1",
            "failed",
            exit_code=3,
            message="boom",
            output_variables=[OutputVariable("Token", "t0ken", sensitive=True)],
        ),
    ]
    store.save_target_results(octo.appliance.db, octo.appliance.vault, task_id, burst)
    rows = {
        r.target_id: r for r in TaskTargetResult.select().where(TaskTargetResult.task == task_id)
    }
    assert sorted(rows) == ["tgt_1", "tgt_2"]
    assert (rows["tgt_1"].state, rows["tgt_1"].exit_code, rows["tgt_1"].message) == (
        "failed",
        3,
        "boom",
    )
    assert rows["tgt_2"].state == "success"
    assert store.open_output_variables(octo.appliance.vault, rows["tgt_1"]) == {"Token": "t0ken"}
