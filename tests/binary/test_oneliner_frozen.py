"""The one-line install with the frozen octo-agent (``frozen_agent``, built once per source
hash): served by the appliance from its build cache, downloaded over the pin, checked against
the signed manifest by itself, run as ``nobody`` in a fresh home until healthy, then removed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from octo_appliance.builds.agent import AgentBuild
from tests.agent_build_standin import serve_env
from tests.fleet import Fleet, running_fleet
from tests.oneliner_support import (
    MARKS,
    NOBODY,
    fresh_home,
    install_command,
    run,
    shared_dir_fixture,  # noqa: F401  (the shared_dir fixture)
    targets,
)

pytestmark = [pytest.mark.binary, *MARKS]


@pytest.fixture(scope="module")
def fleet(shared_dir: Path, frozen_agent: AgentBuild) -> Iterator[Fleet]:
    builds = frozen_agent.path.parents[1]
    with running_fleet(shared_dir / "fleet", serve_env=serve_env(builds)) as fleet:
        yield fleet


def test_the_frozen_agent_installed_by_the_one_liner_is_healthy(
    fleet: Fleet, shared_dir: Path, frozen_agent: AgentBuild
) -> None:
    home = fresh_home(shared_dir, "home")
    command = install_command(fleet, "--poll") + " --name frozen-poll"
    done = run(command, user=NOBODY, home=home)
    assert done.code == 0, done.err + done.out
    installed = home / ".local" / "share" / "octo-agent" / "bin" / "octo-agent"
    assert installed.read_bytes() == frozen_agent.path.read_bytes()
    assert targets(fleet)["frozen-poll"]["health_status"] == "Healthy"
    task = fleet.wait_task(fleet.run_script("echo frozen-$((6*7))", roles=["web"]), timeout=120)
    assert task["state"] == "success", task["error"]
    assert "frozen-42" in fleet.log_of(task["id"], "frozen-poll")

    gone = run(command + " --uninstall", user=NOBODY, home=home)
    assert gone.code == 0, gone.err
    assert not installed.exists()
    assert "frozen-poll" not in targets(fleet)
