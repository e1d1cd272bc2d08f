"""A chatty script through a real polling agent and a real appliance: every line reaches the
task log in order (up to the task's limit, then a count and the tail), the output variable set
after it arrives, and the agent's process tree (agent, runner, script) stays small, because
each part holds the one before it back instead of queueing (docs/operations.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fleet import Fleet, running_fleet
from tests.peak_rss import PeakRss

MB = 1024 * 1024
#: the appliance's limit here: the 20 MB run (200,003 lines) fits, the 200 MB one does not
LIMIT = 250_000

CHATTY = """python3 -c '
import sys
for i in range({count}):
    sys.stdout.write("line %07d " % i + "x" * 88 + "\\n")
'
echo "final line"
set_octovariable Done "yes"
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    env = {"OCTO_TASK_LOG_MAX_LINES": str(LIMIT)}
    with running_fleet(tmp_path_factory.mktemp("chatty"), serve_env=env) as fleet:
        agents = fleet.register_many([("poll-1", "polling")])
        fleet.start_agents(agents)
        fleet.wait_connected(agents)
        yield fleet


def run_chatty(fleet: Fleet, count: int) -> tuple[dict[str, Any], list[str], int]:
    agent = fleet.agents["poll-1"]
    assert agent.process is not None
    rss = PeakRss(agent.process.pid)
    try:
        task_id = fleet.run_script(CHATTY.format(count=count), roles=["web"])
        task = fleet.wait_task(task_id, timeout=1800)
    finally:
        peak = rss.stop()
    return task, messages(fleet, task_id), peak


def messages(fleet: Fleet, task_id: str) -> list[str]:
    """The task's log messages, 5,000 lines a page."""
    found: list[str] = []
    since = 0
    while True:
        response = fleet.api().get(
            f"/api/v1/tasks/{task_id}/log", params={"since": since, "take": 5000}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        if not page["items"]:
            return found
        found += [line["message"] for line in page["items"]]
        since = page["next_since"]


def numbered(lines: list[str]) -> list[int]:
    return [int(m.split()[1]) for m in lines if m.startswith("line ")]


def check_outcome(task: dict[str, Any]) -> None:
    assert task["state"] == "success", task
    [row] = task["targets"]
    assert {v["name"]: v["value"] for v in row["output_variables"]} == {"Done": "yes"}


@pytest.mark.slow  # ~1 min on an idle 2-core machine: the appliance seals and stores each line
def test_20_mb_through_an_agent_arrive_whole_in_bounded_memory(fleet: Fleet) -> None:
    count = 20 * MB // 100
    task, lines, peak = run_chatty(fleet, count)
    check_outcome(task)
    assert numbered(lines) == list(range(count))
    final = lines.index("final line")
    assert "set output variable 'Done'" in lines[final:]
    assert not any("not shown" in line or "holds its output" in line for line in lines)
    assert peak < 200 * MB, f"the agent's process tree peaked at {peak // MB} MB"


@pytest.mark.slow
def test_200_mb_through_an_agent_are_counted_past_the_limit_in_bounded_memory(
    fleet: Fleet,
) -> None:
    count = 200 * MB // 100
    task, lines, peak = run_chatty(fleet, count)
    check_outcome(task)
    [summary] = [line for line in lines if "lines of script output not shown" in line]
    hidden = int(summary.split()[1].replace(",", ""))
    head = numbered(lines[: lines.index(summary)])
    tail = numbered(lines[lines.index(summary) :])
    assert head == list(range(len(head))) and len(head) > LIMIT - 50
    assert tail == list(range(count - len(tail), count))
    assert len(head) + hidden + len(tail) == count  # every line shown or counted
    assert "final line" in lines[lines.index(summary) :]
    assert peak < 200 * MB, f"the agent's process tree peaked at {peak // MB} MB"
