"""Self-update of the frozen octo-agent: build 1.0.0, supervised, connected to an appliance
that offers build 2.0.0 (both from ``frozen_agent_of``, cached by source hash), updates itself
while a queued script waits for it, and the script then runs on 2.0.0."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from octo_appliance.agent.builds import Builds
from octo_appliance.builds.agent import AgentBuild
from tests.fleet import running_fleet, wait_until
from tests.update_support import declare, supervised_agent

pytestmark = [pytest.mark.binary, pytest.mark.slow]

V1, V2 = "1.0.0", "2.0.0"


def test_frozen_v1_updates_itself_to_frozen_v2(
    frozen_agent_of: Callable[[str | None], AgentBuild], tmp_path: Path
) -> None:
    v1, v2 = frozen_agent_of(V1), frozen_agent_of(V2)
    offered = tmp_path / "offered" / "octo-agent"
    offered.parent.mkdir()
    offered.write_bytes(v2.path.read_bytes())
    offered.chmod(0o755)
    env = {"OCTO_AGENT_BUILD_FILE": str(declare(offered, V2)), "OCTO_AGENT_UPDATES": "manual"}
    with running_fleet(tmp_path / "fleet", serve_env=env) as fleet:
        agent = fleet.register("frozen-1", "polling")
        process = supervised_agent(agent.home, v1.path)
        fleet.processes.append(process)
        agent.process = process.start(timeout=120)
        fleet.wait_connected([agent])
        wait_until(
            lambda: fleet.call("GET", f"/targets/{agent.target_id}")["agent_version"] == V1,
            30,
            "the appliance to see 1.0.0",
        )

        fleet.call("POST", f"/targets/{agent.target_id}/update-agent", 202)
        task = fleet.wait_task(fleet.run_script("echo after-the-update"), timeout=180)

        assert task["state"] == "success", fleet.log_of(task["id"], "frozen-1")
        target = fleet.call("GET", f"/targets/{agent.target_id}")
        assert (target["agent_version"], target["update"]) == (V2, "none")
        state = Builds(agent.home.builds_dir).read()
        assert state.current is not None and state.current["version"] == V2
        staged = agent.home.builds_dir / f"octo-agent-{V2}"
        assert staged.read_bytes() == v2.path.read_bytes()
