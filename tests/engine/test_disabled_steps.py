"""A disabled step stays in the process and the release but a real deployment never runs it:
the steps around it run, and the log shows it skipped."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def step(name: str, **fields: Any) -> dict[str, Any]:
    body = f"echo {name} ran"
    script = {"syntax": "bash", "body": body, "run_on": "appliance"}
    return {"name": name, "type": "run-script", "properties": script, **fields}


def test_a_disabled_step_is_skipped_and_the_others_run(octo_appliance_factory: Any) -> None:
    octo = octo_appliance_factory(services=True)
    outcome = octo.deploy_steps([step("First"), step("Off", disabled=True), step("Last")])
    assert outcome.state == "success", outcome.log
    lines = outcome.log.splitlines()
    assert "First ran" in lines and "Last ran" in lines
    assert "Off ran" not in lines
    assert "disabled in the process" in outcome.log
