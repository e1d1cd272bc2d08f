"""``script run`` and ``target health-check`` as subprocesses against a real appliance and two
real polling agents: the log is followed live, each target's result printed, the exit code is
the script's outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import Appliance
from tests.fleet import running_fleet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_fleet(tmp_path_factory.mktemp("cli-script")) as fleet:
        agents = fleet.register_many([("web-1", "polling"), ("web-2", "polling")])
        fleet.start_agents(agents, together=True)
        fleet.wait_connected(agents)
        yield Appliance(fleet.server, fleet.api_key)


def test_script_run_follows_the_log_of_every_target(appliance: Appliance, tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text('echo "hello #{Who} from #{Octo.Machine.Name}"\n')

    done = appliance.cli(
        "script",
        "run",
        "--environment",
        "Dev",
        "--role",
        "web",
        "--file",
        str(script),
        "--variable",
        "Who=ops",
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.match(r"Running the bash script on web-\d, web-\d: task task_\w+\.", done.stdout)
    for name in ("web-1", "web-2"):
        assert f"[{name}] hello ops from {name}" in done.stdout
        assert re.search(rf"^  success +{name} \(exit code 0\)", done.stdout, re.MULTILINE)
    assert re.search(r"^Task task_\w+ success", done.stdout, re.MULTILINE)


def test_a_failing_script_exits_1_and_json_is_the_task(appliance: Appliance) -> None:
    done = appliance.cli(
        "script", "run", "--target", "web-2", "--body", "echo no; exit 4", "--json"
    )

    assert done.returncode == 1
    task = json.loads(done.stdout)
    assert task["state"] == "failed"
    assert [(t["target_name"], t["exit_code"]) for t in task["targets"]] == [("web-2", 4)]
    assert "[web-2] no" in done.stderr  # the live log goes to stderr with --json


def test_health_check_of_a_connected_agent(appliance: Appliance) -> None:
    done = appliance.cli("target", "health-check", "web-1")

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Checking the health of web-1: task task_")
    shown = json.loads(appliance.cli("target", "show", "web-1", "--json").stdout)
    assert shown["health_status"] == "Healthy"


def test_a_window_of_one_runs_the_targets_one_after_the_other(
    appliance: Appliance, tmp_path: Path
) -> None:
    """``--window 1``: the second target starts only when the first has finished, by the
    targets' own clocks."""
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    body = (
        f'd="{stamps}"\n'
        'date +%s.%N > "$d/#{Octo.Machine.Name}.start"\n'
        "sleep 0.5\n"
        'date +%s.%N > "$d/#{Octo.Machine.Name}.end"\n'
    )

    done = appliance.cli(
        "script", "run", "--role", "web", "--environment", "Dev", "--window", "1", "--body", body
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "at most 1 target(s) at once" in done.stdout
    spans = sorted(
        (float((stamps / f"{n}.start").read_text()), float((stamps / f"{n}.end").read_text()))
        for n in ("web-1", "web-2")
    )
    assert spans[0][1] <= spans[1][0], spans  # the first ended before the second started


def test_a_window_below_one_is_refused_before_anything_runs(appliance: Appliance) -> None:
    def tasks() -> int:
        with appliance.server.http2_client(headers={"X-Api-Key": appliance.key}) as client:
            return int(client.get("/api/v1/tasks").json()["total"])

    before = tasks()

    done = appliance.cli("script", "run", "--target", "web-1", "--body", "echo x", "--window", "0")

    assert done.returncode == 1
    assert "window" in done.stderr and "greater than or equal to 1" in done.stderr
    assert tasks() == before
