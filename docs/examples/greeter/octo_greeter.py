"""An example step type (docs/plugins.md): ``greet`` prints a greeting on every target of the
step's roles, or once on the appliance's built-in worker, through the runner's ``run-script``.
"""

from __future__ import annotations

import shlex
from typing import Any

from octo_appliance.plugin_api import (
    PLUGIN_API_VERSION,
    FieldProblem,
    Property,
    RunnerRequest,
    StepContext,
    StepFailed,
    StepTarget,
    StepType,
    StepTypeRegistry,
    hookimpl,
)

#: the plugin API version this plugin was written for
OCTO_PLUGIN_API = PLUGIN_API_VERSION


class Greet(StepType):
    name = "greet"
    summary = "Print a greeting on each target (or on the appliance)"
    properties = (
        Property("greeting", "string", "What to say; #{...} is substituted.", required=True),
        Property("shout", "boolean", "Say it in capitals.", default=False),
        Property(
            "run_on",
            "string",
            "targets: each target of the step's roles; appliance: the built-in worker.",
            default="targets",
            enum=("targets", "appliance"),
        ),
    )

    def validate(self, properties: dict[str, Any]) -> list[FieldProblem]:
        # what a schema cannot say: the schema already checked types and required fields
        if "\x00" in str(properties.get("greeting", "")):
            return [FieldProblem("greeting", "must not contain NUL characters")]
        return []

    def targets_machines(self, properties: dict[str, Any]) -> bool:
        return properties.get("run_on", "targets") == "targets"

    def runs_on_appliance(self, properties: dict[str, Any]) -> bool:
        return properties.get("run_on") == "appliance"

    async def execute(self, ctx: StepContext) -> None:
        def request(target: StepTarget | None) -> RunnerRequest:
            values = ctx.properties_for(target)
            text = str(values["greeting"])
            if values.get("shout"):
                text = text.upper()
            body = f"echo {shlex.quote(text)}"
            return RunnerRequest(
                "run-script", {"syntax": "bash", "body": body, "substitute": False}
            )

        if self.runs_on_appliance(ctx.step.properties):
            run = await ctx.run_on_appliance(request(None))
            if not run.succeeded:
                raise StepFailed(f"the greeting failed on the appliance: {run.message}")
            return
        runs = await ctx.run_on_targets(request)
        failed = [run.target.name for run in runs if not run.succeeded]
        if failed:
            raise StepFailed("the greeting failed on " + ", ".join(failed))
        ctx.log("info", f"greeted {len(runs)} target(s)")


@hookimpl
def register_step_types(registry: StepTypeRegistry) -> None:
    registry.add(Greet)
