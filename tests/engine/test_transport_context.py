"""Transports built from the registry with their context at start (services.py): the built-in
worker's settings reach it exactly like any transport's, through its declared settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from octo_appliance.plugin_api import TransportContext
from octo_appliance.transports.local import LocalTransport

pytestmark = pytest.mark.slow

SCRIPT = {"syntax": "bash", "body": "echo worker says hi", "run_on": "appliance"}
STEP = {"name": "Hi", "type": "run-script", "properties": SCRIPT}


def write_config(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "config.toml").write_text(text, encoding="utf-8")


def test_the_worker_reads_its_settings_from_its_context(
    octo_appliance_factory: Any, tmp_path: Path
) -> None:
    worker_dir = tmp_path / "elsewhere"
    write_config(tmp_path / "data0", f'worker_dir = "{worker_dir}"\n')
    octo = octo_appliance_factory(services=True)
    local = octo.services.services.dispatcher.transports["local"]
    assert isinstance(local, LocalTransport)
    assert isinstance(local.context, TransportContext)
    assert dict(local.context.settings) == {
        "builtin_worker": True,
        "worker_user": None,
        "worker_dir": str(worker_dir),
    }
    assert local.context.testing and local.root == worker_dir
    # the listening and polling transports are agent transports; the worker is not
    assert local.context.agent_network is None
    listening = octo.services.services.dispatcher.transports["listening"]
    assert listening.context.agents is octo.appliance.agent_network

    outcome = octo.deploy_steps([STEP])
    assert outcome.state == "success", outcome.log
    assert "worker says hi" in outcome.log.splitlines()
    assert (worker_dir / "state").is_dir()


def test_builtin_worker_false_disables_it_through_the_same_path(
    octo_appliance_factory: Any, tmp_path: Path
) -> None:
    write_config(tmp_path / "data0", "builtin_worker = false\n")
    octo = octo_appliance_factory(services=True)
    local = octo.services.services.dispatcher.transports["local"]
    assert local.context.settings["builtin_worker"] is False and not local.enabled
    outcome = octo.deploy_steps([STEP])
    assert outcome.state == "failed"
    assert "setting builtin_worker is false" in outcome.log
