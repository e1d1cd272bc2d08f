"""The ``greeting`` step type: a script on each target that prints the greeting."""

from __future__ import annotations

import shlex
from typing import Any

from octo_appliance.plugin_api import FieldProblem, Property, RunnerRequest, StepFailed, StepType
from octo_greeting.words import greeting


class Greeting(StepType):
    name = "greeting"
    summary = "Print a greeting on each target"
    properties = (Property("name", "string", "Who is greeted.", required=True),)

    def validate(self, properties: dict[str, Any]) -> list[FieldProblem]:
        return [] if properties.get("name") else [FieldProblem("name", "is required")]

    async def execute(self, ctx: Any) -> None:
        def request(target: Any) -> RunnerRequest:
            text = greeting(ctx.properties_for(target)["name"])
            body = f"echo {shlex.quote(text)}"
            return RunnerRequest("run-script", {"syntax": "sh", "body": body, "substitute": False})

        runs = await ctx.run_on_targets(request)
        if any(run.state in ("failed", "canceled") for run in runs):
            raise StepFailed("the greeting failed on a target")
