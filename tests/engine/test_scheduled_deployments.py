"""Deployments scheduled ahead wait ``queued``: they hold no slot of the task cap, survive a
restart of the engine and start once their time has come (the engine wakes up for it)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from octo_appliance.db import ServerTask, utcnow
from octo_appliance.engine.tasks import TaskEngine
from tests.engine.deploy_rig import Rig, script
from tests.engine.support import wait_finished


def test_deployments_scheduled_ahead_do_not_block_one_that_runs_now(rig: Rig) -> None:
    release = rig.release([script("Hello", "echo hello")])
    later = utcnow() + timedelta(hours=1)
    scheduled = [rig.deploy(release, not_before=later) for _ in range(rig.engine.task_cap)]
    now = rig.deploy(release)
    # with the cap of 5 filled by waiting deployments this one would not start for an hour
    assert wait_finished(now.task_id).state == "success"
    for deployment in scheduled:
        row = ServerTask.get_by_id(deployment.task_id)
        assert (row.state, row.started_at, row.node) == ("queued", None, "")
        assert row.not_before is not None and abs(row.not_before - later) < timedelta(seconds=1)


def test_a_scheduled_deployment_survives_a_restart_and_runs_on_time(rig: Rig) -> None:
    release = rig.release([script("Hello", "echo scheduled hello")])
    when = utcnow() + timedelta(seconds=2)
    deployment = rig.deploy(release, not_before=when)
    rig.engine.stop_in_thread()  # before its time: it was never claimed, so nothing fails
    assert ServerTask.get_by_id(deployment.task_id).state == "queued"
    # polling once a minute: only the engine's own wake-up for the due time starts it
    second = TaskEngine(
        rig.octo.appliance.db,
        rig.octo.appliance.vault,
        "node-1",
        kinds=rig.engine.kinds,
        poll_interval=60,
    )
    second.start_in_thread()
    rig.engine = second
    try:
        task = wait_finished(deployment.task_id)
        assert task.state == "success", task.error
        assert task.started_at is not None and task.started_at >= when
        assert "scheduled hello" in rig.log(task.id)
    finally:
        with contextlib.suppress(Exception):
            rig.in_engine(rig.local.close())
        second.stop_in_thread()
