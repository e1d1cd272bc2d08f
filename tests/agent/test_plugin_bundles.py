"""A step plugin's runner commands on a real agent: ``runner.run`` names the bundle by SHA-256,
the agent fetches it from the appliance (``plugin.fetch``) once, checks the hash before
keeping or running it, and hands it to the runner (listening and polling agents)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.comms import CallFailed
from octo_appliance.plugin_api import PluginBundle
from octo_appliance.plugin_loading.bundles import BundleStore
from tests.runner.test_plugin_commands import SAMPLE

from .conftest import Agent, RunnerBuild


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> PluginBundle:
    return BundleStore(tmp_path_factory.mktemp("bundles")).bundle_for("sample", SAMPLE)


def greet(build: RunnerBuild, plugin: dict[str, str]) -> dict[str, Any]:
    return {
        "task_id": f"tsk_{uuid.uuid4().hex[:12]}",
        "runner": build.ref,
        "command": "sample-greet",
        "arguments": {"who": "#{Name}"},
        "variables": [
            {"name": "Name", "value": "agent", "sensitive": False},
            {"name": "Greeting", "value": "hi", "sensitive": False},
        ],
        "plugin": plugin,
    }


def test_the_bundle_is_fetched_once_verified_and_run(
    agent: Agent, runner_build: RunnerBuild, bundle: PluginBundle
) -> None:
    agent.standin.bundles[bundle.sha256] = bundle.path
    for _ in range(2):
        events: list[dict[str, Any]] = []
        result = agent.target.call(
            "runner.run", greet(runner_build, bundle.as_param()), events=events
        ).result
        assert result["success"], result
        assert "HELLO AGENT" in [e.get("message") for e in events]
        assert {"name": "Greeted", "value": "agent", "sensitive": False} in result[
            "output_variables"
        ]
    assert agent.standin.fetches[f"plugin:{bundle.sha256}"] == 1
    cached = agent.home.runners_dir / f"plugin-{bundle.sha256}.zip"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == bundle.sha256
    info = agent.target.call("agent.info", {}).result
    assert info["plugin_bundles"] == 1


def test_a_bundle_with_another_hash_is_refused_and_not_kept(
    agent: Agent, runner_build: RunnerBuild, bundle: PluginBundle, tmp_path: Path
) -> None:
    announced = "cd" * 32  # the appliance sends the real bundle, the task asked for this
    agent.standin.bundles[announced] = bundle.path
    params = greet(runner_build, {"name": "sample", "sha256": announced})
    with pytest.raises(CallFailed) as failed:
        agent.target.call("runner.run", params)
    assert failed.value.code == "runner_mismatch"
    assert announced in failed.value.message and bundle.sha256 in failed.value.message
    assert not (agent.home.runners_dir / f"plugin-{announced}.zip").exists()
    assert not any(agent.home.work_dir.glob(f"{params['task_id']}-*"))


def test_a_malformed_plugin_parameter_is_a_bad_request(
    agent: Agent, runner_build: RunnerBuild
) -> None:
    with pytest.raises(CallFailed) as failed:
        agent.target.call("runner.run", greet(runner_build, {"sha256": "../../etc/passwd"}))
    assert failed.value.code == "bad_request"
    assert "plugin.sha256" in failed.value.message
