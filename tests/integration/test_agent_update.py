"""Agent self-update end to end: a real appliance serving build v2, real supervised agents
started on build v1 (launcher builds of the development agent, tests/update_support.py).

- v1 updates itself to v2 while a deployment queued during the update waits for it, then
  succeeds on v2 (polling and listening);
- a v2 that exits at start is rolled back to v1, the target shows ``failed`` with the reason,
  and the appliance does not try that build again by itself;
- a build whose bytes were altered, or cut short, after the appliance signed its manifest is
  refused before anything is replaced.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.agent.builds import Builds
from octo_appliance.agent.home import Home
from tests.fleet import (
    APPLIANCE_COMMAND,
    Fleet,
    FleetAgent,
    clean_env,
    running_fleet,
    wait_until,
)
from tests.update_support import alter, declare, launcher, supervised_agent

pytestmark = pytest.mark.slow

V1, V2 = "1.0.0", "2.0.0"


@contextlib.contextmanager
def _updating(
    tmp_path: Path,
    mode: str = "polling",
    *,
    updates: str = "manual",
    broken: bool = False,
    damage: str = "",
) -> Iterator[tuple[Fleet, FleetAgent]]:
    """An appliance offering v2 (``broken``: one that exits at start; ``damage``: altered or
    truncated after the appliance signed it) and agent ``web-1`` connected on v1."""
    v1 = launcher(tmp_path / "builds" / "v1", V1)
    v2 = declare(launcher(tmp_path / "builds" / "v2", V2, exits_at_start=broken), V2)
    env = {
        "OCTO_AGENT_BUILD_FILE": str(v2),
        "OCTO_AGENT_UPDATES": updates,
        "OCTO_AGENT_UPDATE_CONFIRM_SECONDS": "30",
    }
    with running_fleet(tmp_path / "fleet", serve_env=env) as fleet:
        if damage:
            alter(v2, truncate=damage == "truncated")
        agent = fleet.register("web-1", mode)
        assert agent.home.require_registered().signing_public_key  # given at registration
        process = supervised_agent(agent.home, v1)
        fleet.processes.append(process)
        agent.process = process.start()
        fleet.wait_connected([agent])
        yield fleet, agent


def _target(fleet: Fleet, agent: FleetAgent) -> dict[str, Any]:
    return dict(fleet.call("GET", f"/targets/{agent.target_id}"))


def _seen_on(fleet: Fleet, agent: FleetAgent, version: str) -> dict[str, Any]:
    """Until the appliance saw the agent run ``version`` (a health check dials listening
    agents; polling ones say it when they connect)."""

    def seen() -> dict[str, Any] | None:
        target = _target(fleet, agent)
        return target if target["agent_version"] == version else None

    if agent.mode == "listening":
        fleet.call("POST", f"/targets/{agent.target_id}/health-check", 202)
    return dict(wait_until(seen, 30, f"{agent.name} to be seen on {version}"))


def _update_state(fleet: Fleet, agent: FleetAgent, prefix: str) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def shown() -> dict[str, Any] | None:
        last.update(_target(fleet, agent))
        return dict(last) if last["update"].startswith(prefix) else None

    try:
        return dict(wait_until(shown, 90, f"{agent.name} to show update {prefix}", every=0.2))
    except AssertionError as exc:  # say what it showed instead, and what the agent said
        seen = {key: last.get(key) for key in ("update", "agent_version", "health_status")}
        tail = agent.log_file.read_text(encoding="utf-8", errors="replace")[-4000:]
        said = [line for line in fleet.server.output().splitlines() if "update" in line]
        raise AssertionError(
            f"{exc}; it shows {seen}; the appliance said:\n"
            + "\n".join(said[-30:])
            + f"\nthe agent's log ends:\n{tail}"
        ) from None


def _deploy(fleet: Fleet, body: str) -> str:
    """A project whose one step runs ``body`` on the web targets, released and deployed to
    Dev; the deployment's task id."""
    step = {
        "name": "Say",
        "type": "run-script",
        "roles": ["web"],
        "properties": {"syntax": "bash", "run_on": "targets", "body": body},
    }
    return fleet.start_deployment([step], name="updating")


def _cli(fleet: Fleet, *args: str) -> str:
    """``octo-appliance ARGS`` against the fleet's appliance; its stdout (exit 0 asserted)."""
    env = clean_env(
        OCTO_SERVER=fleet.server.url,
        OCTO_API_KEY=fleet.api_key,
        OCTO_SERVER_THUMBPRINT=fleet.server.banner.thumbprint,
    )
    done = subprocess.run(
        [*APPLIANCE_COMMAND, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _staged_count(home: Home, version: str) -> int:
    text = home.log_file.read_text(encoding="utf-8", errors="replace")
    return text.count(f"agent build {version} staged")


@pytest.mark.parametrize("mode", ["polling", "listening"])
def test_v1_updates_to_v2_while_a_queued_deployment_waits_then_succeeds(
    tmp_path: Path, mode: str
) -> None:
    with _updating(tmp_path, mode) as (fleet, agent):
        assert _seen_on(fleet, agent, V1)["update"] == "available"

        answer = fleet.call("POST", f"/targets/{agent.target_id}/update-agent", 202)
        assert answer["update"] == "in-progress"
        task_id = _deploy(fleet, "echo ran-on-$OCTO_AGENT_LAUNCHER_VERSION")

        task = fleet.wait_task(task_id, timeout=120)
        assert task["state"] == "success", fleet.log_of(task_id, "web-1")
        lines = fleet.log_of(task_id, "web-1")
        assert "waiting for the agent on this target to finish updating itself" in lines
        assert f"ran-on-{V2}" in lines  # the task ran on the new build
        target = _update_state(fleet, agent, "none")
        assert target["agent_version"] == V2
        state = Builds(agent.home.builds_dir).read()
        assert state.current is not None and state.current["version"] == V2
        assert state.trial is None and state.failed is None


def test_a_v2_that_exits_at_start_is_rolled_back_and_not_retried(tmp_path: Path) -> None:
    with _updating(tmp_path, updates="auto", broken=True) as (fleet, agent):
        target = _update_state(fleet, agent, "failed")
        assert "exited with code 3 before it confirmed" in target["update"]
        assert target["agent_version"] == V1
        state = Builds(agent.home.builds_dir).read()
        assert state.current is None and state.trial is None  # still the installed v1
        assert state.failed is not None and state.failed["version"] == V2
        assert not list(agent.home.builds_dir.glob("octo-agent-*"))

        # v1 is back and works; the appliance does not try v2 again by itself
        task = fleet.wait_task(fleet.run_script("echo still-$OCTO_AGENT_LAUNCHER_VERSION"))
        assert task["state"] == "success"
        assert f"still-{V1}" in fleet.log_of(task["id"], "web-1")
        assert _target(fleet, agent)["update"].startswith("failed")
        assert _staged_count(agent.home, V2) == 1


@pytest.mark.parametrize("damage", ["altered", "truncated"])
def test_a_build_whose_bytes_changed_is_refused_before_anything_is_replaced(
    tmp_path: Path, damage: str
) -> None:
    with _updating(tmp_path, damage=damage) as (fleet, agent):
        _seen_on(fleet, agent, V1)

        asked = _cli(fleet, "agent", "update", "--target", "web-1", "--json")
        assert [(a["name"], a["update"]) for a in json.loads(asked)] == [("web-1", "in-progress")]
        target = _update_state(fleet, agent, "failed")
        assert "refused" in target["update"]
        assert ("bytes" if damage == "truncated" else "SHA-256") in target["update"]
        assert target["agent_version"] == V1
        state = Builds(agent.home.builds_dir).read()
        assert state.current is None and state.trial is None
        assert not list(agent.home.builds_dir.glob("octo-agent-*"))
        assert not [p for p in agent.home.tmp_dir.iterdir() if p.is_file()]
        task = fleet.wait_task(fleet.run_script("echo fine"))
        assert task["state"] == "success"
