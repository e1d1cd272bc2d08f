"""Constants the engine shares with the settings and the API are defined once."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from octo_appliance.config import Config
from octo_appliance.engine import deployments, lifecycles
from octo_appliance.engine.deployments import DeploymentServices
from octo_appliance.engine.tasks import TaskEngine
from octo_appliance.engine.tasks.output import DEFAULT_MAX_LINES

PACKAGE = Path(__file__).resolve().parents[2] / "octo_appliance"


def test_the_deployment_task_kind_is_defined_once() -> None:
    defined = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and node.value.value == "deployment"
    ]
    assert len(defined) == 1, defined
    assert deployments.KIND == lifecycles.DEPLOYMENT_TASK_KIND == "deployment"


def test_engine_defaults_are_the_settings_defaults() -> None:
    engine = inspect.signature(TaskEngine).parameters
    assert engine["task_cap"].default == Config.task_cap
    assert engine["task_log_max_lines"].default == Config.task_log_max_lines == DEFAULT_MAX_LINES
    services = inspect.signature(DeploymentServices).parameters
    assert services["step_parallelism"].default == Config.step_parallelism
