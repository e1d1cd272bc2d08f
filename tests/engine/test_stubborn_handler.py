"""A handler that does not stop when its task is canceled (issue 14): the task still ends,
canceled, and frees its slot under the cap."""

from __future__ import annotations

import asyncio
import threading

from octo_appliance.db.tasks import TaskTargetResult
from octo_appliance.engine.tasks import RunningTask, TaskEngine, TaskKindRegistry
from octo_appliance.engine.tasks.log import read_lines
from octo_appliance.testing import OctoTestAppliance
from tests.engine.support import wait_finished, wait_state


def test_a_handler_that_swallows_the_cancel_is_let_go(octo: OctoTestAppliance) -> None:
    let_end = threading.Event()  # set at the end, so the stubborn handler can return
    looping, ended = threading.Event(), threading.Event()

    async def stubborn(task: RunningTask) -> None:
        await task.set_target_result("tgt_1", "web-1", "executing")
        looping.set()
        try:
            while not let_end.is_set():
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:  # the bug under test: the cancel is swallowed
                    continue
        finally:
            ended.set()

    async def quick(task: RunningTask) -> None:
        task.info("quick")

    kinds = TaskKindRegistry()
    kinds.register("stubborn", stubborn)
    kinds.register("quick", quick)
    engine = TaskEngine(
        octo.appliance.db,
        octo.appliance.vault,
        "node-1",
        task_cap=1,
        kinds=kinds,
        poll_interval=0.2,
    )
    engine.stop_wait = 0.5  # seconds a stopped handler may take (default 60)
    engine.start_in_thread()
    try:
        task_id = engine.enqueue("stubborn", "ignores cancel")
        wait_state(task_id, "executing")
        assert looping.wait(10)
        assert engine.cancel(task_id, "bob") == "requested"

        task = wait_finished(task_id)
        assert task.state == "canceled" and task.error == "canceled by bob"
        result = TaskTargetResult.get(TaskTargetResult.task == task_id)
        assert result.state == "canceled"
        lines = [line.message for line in read_lines(octo.appliance.vault, task_id, 0, 100)]
        assert any("did not stop within 0.5 s" in line for line in lines), lines
        # its slot under the cap of 1 is free again
        assert wait_finished(engine.enqueue("quick", "after it")).state == "success"
    finally:
        let_end.set()
        ended.wait(10)  # not under test: the loop must not close under the handler
        engine.stop_in_thread()
