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
