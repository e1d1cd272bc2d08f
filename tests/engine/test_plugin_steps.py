"""A step plugin's own runner command in a deployment, on the built-in worker: the engine
builds the step type's bundle and the worker's runner loads the command from it (SQLite and
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from octo_appliance.plugin_api import (
    RunnerRequest,
    StepContext,
    StepFailed,
    StepType,
    StepTypeRegistry,
    TargetCode,
    hookimpl,
)
from octo_appliance.testing import OctoTestAppliance
from tests.engine.deploy_rig import make_rig
from tests.engine.support import wait_finished
from tests.runner.test_plugin_commands import SAMPLE


class Greeter(StepType):
    name = "greeter"
    summary = "Greets from the appliance with the sample target-side command"
    target_code: TargetCode = SAMPLE

    def targets_machines(self, properties: dict[str, object]) -> bool:
        return False

    def runs_on_appliance(self, properties: dict[str, object]) -> bool:
        return True

    async def execute(self, ctx: StepContext) -> None:
        run = await ctx.run_on_appliance(RunnerRequest("sample-greet", {"who": "#{Name}"}))
        if not run.succeeded:
            raise StepFailed(run.message)
        ctx.log(
            "info",
            "outputs: "
            + ",".join(f"{v.name}={v.value}" for v in run.output_variables if not v.sensitive),
        )


@hookimpl
def register_step_types(registry: StepTypeRegistry) -> None:
    registry.add(Greeter)


PLUGIN = SimpleNamespace(register_step_types=register_step_types, OCTO_PLUGIN_API=2)


def test_a_plugin_command_runs_on_the_built_in_worker(
    octo_appliance_factory: Callable[..., OctoTestAppliance],
    database_url: str | None,
    tmp_path: Path,
) -> None:
    with make_rig(octo_appliance_factory, database_url, tmp_path, [PLUGIN]) as rig:
        step = {"name": "Greet", "type": "greeter", "properties": {}}
        variables = [
            {"name": "Name", "value": "worker"},
            {"name": "Greeting", "value": "hi"},
        ]
        deployment = rig.deploy(rig.release([step], variables))
        task = wait_finished(deployment.task_id, timeout=60)
        log = rig.log(deployment.task_id)
        assert task.state == "success", (task.error, log)
        assert "HELLO WORKER" in log
        assert "outputs: Greeted=worker,FromScript=yes" in log
        bundles = list((rig.octo.appliance.data_dir / "runner" / "plugins").glob("*.zip"))
        assert len(bundles) == 1
