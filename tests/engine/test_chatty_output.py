"""A chatty script through the engine (built-in worker: the agent's runner host, the real
runner, the task log in the database): every line is stored, in order, up to the task's
limit; past it a count and the last lines, never a silent gap."""

from __future__ import annotations

import pytest

from octo_appliance.db import TaskTargetResult
from octo_appliance.engine.tasks.log import read_lines
from octo_appliance.engine.tasks.output import TAIL_LINES
from tests.engine.deploy_rig import Rig, script
from tests.engine.support import wait_finished

CHATTY = """python3 -c '
import sys
for i in range({count}):
    sys.stdout.write("line %07d " % i + "x" * 88 + "\\n")
'
echo "final line"
set_octovariable Done "yes"
"""


def run_chatty(rig: Rig, count: int) -> tuple[str, list[str]]:
    release = rig.release([script("Chatty", CHATTY.format(count=count))])
    task = wait_finished(rig.deploy(release).task_id, timeout=600)
    lines = read_lines(rig.octo.appliance.vault, task.id, 0, count + 1000)
    row = TaskTargetResult.get(TaskTargetResult.task == task.id)
    outputs = {v["name"]: v["value"] for v in row.output_variables}
    assert outputs == {"Octo.Action[Chatty].Output.Done": "yes"}
    return task.state, [line.message for line in lines]


def numbered(messages: list[str]) -> list[int]:
    return [int(m.split()[1]) for m in messages if m.startswith("line ")]


@pytest.mark.slow
def test_20_mb_of_output_reach_the_task_log_whole_and_in_order(rig: Rig) -> None:
    count = 200_000  # 20 MB
    state, messages = run_chatty(rig, count)
    assert state == "success"
    assert numbered(messages) == list(range(count))
    final = messages.index("final line")
    assert final > messages.index(f"line {count - 1:07d} " + "x" * 88)
    assert "set output variable 'Done'" in messages[final:]


def test_past_the_limit_lines_are_counted_and_the_tail_is_kept(rig: Rig) -> None:
    rig.engine.task_log_max_lines = 1_000
    count = 3_000
    state, messages = run_chatty(rig, count)
    assert state == "success"
    [summary] = [m for m in messages if "lines of script output not shown" in m]
    hidden = int(summary.split()[1].replace(",", ""))
    before, after = messages[: messages.index(summary)], messages[messages.index(summary) + 1 :]
    # the first lines up to the limit, then the run's last TAIL_LINES lines
    head, tail = numbered(before), numbered(after)
    assert head == list(range(len(head))) and len(head) > 900
    kept = after[: after.index("set output variable 'Done'") + 1]  # then the engine's lines
    assert len(kept) == TAIL_LINES
    assert tail == list(range(count - len(tail), count))
    assert kept[-2:] == ["final line", "set output variable 'Done'"]
    assert len(head) + hidden + len(tail) == count  # every line shown or counted
