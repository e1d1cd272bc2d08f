"""``run-script``: an inline script run by the runner on every target of the step's roles, or
once on the appliance's built-in worker (``run_on: appliance``, for cloud and PaaS work where
no agent can be installed).

Properties: ``syntax`` (``bash``, ``sh``, ``python``, ``pwsh``), ``body`` (the script; ``#{...}``
is substituted by the engine per target before it is sent), ``run_on`` (``targets``, the
default, or ``appliance``).
"""

from __future__ import annotations

from typing import Any

from octo_runner.substitution import TemplateSyntaxError, parse

from octo_appliance.plugin_api import PLUGIN_API_VERSION, StepTypeRegistry, hookimpl
from octo_appliance.plugin_api.properties import unknown_properties
from octo_appliance.plugin_api.steps import (
    FieldProblem,
    Property,
    RunnerRequest,
    StepContext,
    StepFailed,
    StepTarget,
    StepType,
)

SYNTAXES = ("bash", "sh", "python", "pwsh")
RUN_ON = ("targets", "appliance")
MAX_BODY_CHARS = 1_048_576
KNOWN = frozenset({"syntax", "body", "run_on"})


def run_on(properties: dict[str, Any]) -> str:
    value = properties.get("run_on", "targets")
    return value if isinstance(value, str) else "targets"


class RunScript(StepType):
    name = "run-script"
    summary = "Run an inline script on each target of the step's roles, or on the appliance"
    properties = (
        Property("syntax", "string", "The script's language.", required=True, enum=SYNTAXES),
        Property(
            "body",
            "text",
            "The script; #{...} is substituted per target before it is sent.",
            required=True,
            max_length=MAX_BODY_CHARS,
        ),
        Property(
            "run_on",
            "string",
            "targets: every target of the step's roles; appliance: once, on the built-in worker.",
            default="targets",
            enum=RUN_ON,
        ),
    )

    def validate(self, properties: dict[str, Any]) -> list[FieldProblem]:
        problems = unknown_properties(
            properties, KNOWN, "is not a property of run-script (use syntax, body, run_on)"
        )
        syntax = properties.get("syntax")
        if syntax is None:
            problems.append(FieldProblem("syntax", "is required: " + ", ".join(SYNTAXES)))
        elif syntax not in SYNTAXES:
            problems.append(FieldProblem("syntax", "must be one of " + ", ".join(SYNTAXES)))
        body = properties.get("body")
        if not isinstance(body, str) or not body.strip():
            problems.append(FieldProblem("body", "is required: the script text"))
        elif len(body) > MAX_BODY_CHARS:
            problems.append(FieldProblem("body", f"is longer than {MAX_BODY_CHARS} characters"))
        else:
            try:
                parse(body)
            except TemplateSyntaxError as exc:
                problems.append(FieldProblem("body", exc.message))
        where = properties.get("run_on", "targets")
        if where not in RUN_ON:
            problems.append(FieldProblem("run_on", "must be targets or appliance"))
        return problems

    def targets_machines(self, properties: dict[str, Any]) -> bool:
        return run_on(properties) != "appliance"

    def runs_on_appliance(self, properties: dict[str, Any]) -> bool:
        return run_on(properties) == "appliance"

    async def execute(self, ctx: StepContext) -> None:
        def request(target: StepTarget | None) -> RunnerRequest:
            values = ctx.properties_for(target)
            # the engine already substituted (strictly): the runner must not do it again,
            # or an escaped ##{Name} would be read as a reference on the second pass
            arguments = {"syntax": values["syntax"], "body": values["body"], "substitute": False}
            return RunnerRequest("run-script", arguments)

        if not self.targets_machines(ctx.step.properties):
            run = await ctx.run_on_appliance(request(None))
            if run.state in ("failed", "canceled"):
                raise StepFailed(f"the script failed on the appliance: {run.message}")
            return
        runs = await ctx.run_on_targets(request)
        failed = [run.target.name for run in runs if run.state in ("failed", "canceled")]
        if failed:
            raise StepFailed(
                f"the script failed on {len(failed)} of {len(runs)} target(s): " + ", ".join(failed)
            )


OCTO_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def register_step_types(registry: StepTypeRegistry) -> None:
    registry.add(RunScript)
