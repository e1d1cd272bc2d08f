"""End to end with real processes: an appliance, two listening and two polling agents, each
registered with ``octo-agent register`` and run as its own ``octo-agent run`` process; the
script console runs scripts on all four at once.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from octo_appliance import __version__
from tests.fleet import Fleet, FleetAgent, running_fleet

NAMES = ("listen-1", "listen-2", "poll-1", "poll-2")

#: every target writes its start time, then waits (bounded) until all four have started:
#: run one after another, the first would give up after 30 s and exit 9
BARRIER_SCRIPT = """\
d="#{Barrier}"
date -u +%Y-%m-%dT%H:%M:%S.%NZ > "$d/#{Octo.Machine.Name}.start"
n=0
for i in $(seq 1 300); do
  n=$(ls "$d" | grep -c '\\.start$')
  [ "$n" -ge 4 ] && break
  sleep 0.1
done
if [ "$n" -lt 4 ]; then echo "only $n of 4 targets started"; exit 9; fi
echo "all 4 started; this is #{Octo.Machine.Name} in #{Octo.Environment.Name}"
echo "to stderr from #{Octo.Machine.Name}" >&2
set_octovariable Started "$(cat "$d/#{Octo.Machine.Name}.start")"
set_octovariable Machine "#{Octo.Machine.Name}"
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("e2e")) as fleet:
        agents = fleet.register_many([(name, name.split("-")[0] + "ing") for name in NAMES])
        fleet.start_agents(agents)
        yield fleet


@pytest.fixture
def barrier(fleet: Fleet) -> Iterator[Path]:
    path = fleet.root / "barrier"
    path.mkdir()
    yield path
    shutil.rmtree(path)


def by_name(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["target_name"]: row for row in task["targets"]}


def outputs(row: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v["value"] for v in row["output_variables"]}


def test_registered_with_the_cli(fleet: Fleet) -> None:
    targets = fleet.api().get("/api/v1/targets").json()["items"]
    shown = {t["name"]: t for t in targets}
    assert set(shown) == set(NAMES)
    for name, agent in fleet.agents.items():
        target = shown[name]
        assert target["id"] == agent.target_id
        assert target["communication_style"] == agent.mode
        assert target["thumbprint"] == agent.home.load_identity().thumbprint
        assert [e["name"] for e in target["environments"]] == ["Dev"]
        assert target["roles"] == ["web"]
        if agent.mode == "listening":
            assert target["uri"] == f"https://127.0.0.1:{agent.listen_port}"


def test_script_runs_on_all_four_at_once(fleet: Fleet, barrier: Path) -> None:
    task_id = fleet.run_script(BARRIER_SCRIPT, roles=["web"], variables={"Barrier": str(barrier)})

    task = fleet.wait_task(task_id, timeout=90)

    assert task["state"] == "success", fleet.log(task_id)
    results = by_name(task)
    assert set(results) == set(NAMES)
    for name, row in results.items():
        assert row["state"] == "success" and row["exit_code"] == 0, row
        assert outputs(row)["Machine"] == name
        assert row["target_id"] == fleet.agents[name].target_id
    # the four start times as the scripts wrote them: all started before any finished
    starts = [datetime.datetime.fromisoformat(outputs(r)["Started"][:26]) for r in results.values()]
    finishes = [datetime.datetime.fromisoformat(r["finished_at"][:-1]) for r in results.values()]
    assert max(starts) < min(finishes)
    for name in NAMES:
        lines = fleet.log_of(task_id, name)
        assert f"all 4 started; this is {name} in Dev" in lines
        assert f"to stderr from {name}" in lines
        assert not any("from" in line and name not in line for line in lines)


def test_a_failing_target_fails_the_task_and_the_others_complete(
    fleet: Fleet, barrier: Path
) -> None:
    body = BARRIER_SCRIPT + '[ "#{Octo.Machine.Name}" = "poll-2" ] && exit 3\necho finished\n'

    task = fleet.wait_task(
        fleet.run_script(body, roles=["web"], variables={"Barrier": str(barrier)}), timeout=90
    )

    assert task["state"] == "failed"
    assert "poll-2" in task["error"] and "1 of 4" in task["error"]
    results = by_name(task)
    assert results["poll-2"]["state"] == "failed"
    assert results["poll-2"]["exit_code"] == 3
    for name in ("listen-1", "listen-2", "poll-1"):
        assert results[name]["state"] == "success" and results[name]["exit_code"] == 0
        assert "finished" in fleet.log_of(task["id"], name)
    assert "finished" not in fleet.log_of(task["id"], "poll-2")
    errors = [line for line in fleet.log(task["id"]) if line["level"] == "error"]
    assert any(
        line["target"] and line["target"]["name"] == "poll-2" and "exit code 3" in line["message"]
        for line in errors
    )


def test_octopus_style_helpers_and_service_messages(fleet: Fleet) -> None:
    body = """\
set_octopusvariable Greeting "hello #{Octopus.Machine.Name}"
echo "read back: $(get_octopusvariable Octopus.Machine.Name)"
echo "##octopus[setVariable name='$(printf Raw | base64)' value='$(printf by-message | base64)']"
echo "##octopus[stdout-warning]"
echo "this line is a warning"
"""
    task = fleet.wait_task(fleet.run_script(body, targets=["listen-2", "poll-1"], environment=None))

    assert task["state"] == "success", fleet.log(task["id"])
    results = by_name(task)
    assert set(results) == {"listen-2", "poll-1"}
    for name, row in results.items():
        assert outputs(row) == {"Greeting": f"hello {name}", "Raw": "by-message"}
        assert f"read back: {name}" in fleet.log_of(task["id"], name)
    warnings = [
        line["target"]["name"]
        for line in fleet.log(task["id"])
        if line["level"] == "warning" and line["message"] == "this line is a warning"
    ]
    assert sorted(warnings) == ["listen-2", "poll-1"]


def test_python_script_through_the_console(fleet: Fleet) -> None:
    body = """\
import octo, sys
name = octo.get_variable("Octo.Machine.Name")
octo.set_variable("FromPython", name.upper())
set_octopusvariable("OctopusName", get_octopusvariable("Octopus.Machine.Name"))
print("python", sys.version_info[0], "on", name, "with #{Colour}")
"""
    task = fleet.wait_task(
        fleet.run_script(body, syntax="python", roles=["web"], variables={"Colour": "teal"})
    )

    assert task["state"] == "success", fleet.log(task["id"])
    for name, row in by_name(task).items():
        assert outputs(row) == {"FromPython": name.upper(), "OctopusName": name}
        assert f"python 3 on {name} with teal" in fleet.log_of(task["id"], name)


def test_health_check_on_demand(fleet: Fleet) -> None:
    queued = []
    for agent in fleet.agents.values():
        response = fleet.api().post(f"/api/v1/targets/{agent.target_id}/health-check")
        assert response.status_code == 202, response.text
        queued.append((agent, response.json()["task_id"]))

    for agent, task_id in queued:
        assert fleet.wait_task(task_id)["state"] == "success", fleet.log(task_id)
        assert_healthy(fleet, agent, task_id)


def assert_healthy(fleet: Fleet, agent: FleetAgent, task_id: str) -> None:
    target = fleet.api().get(f"/api/v1/targets/{agent.target_id}").json()
    assert target["health_status"] == "Healthy"
    assert target["agent_version"] == __version__
    assert target["last_seen"] is not None
    assert f"{agent.name}: Healthy (agent {__version__})" in fleet.log_of(task_id, agent.name)
