"""The ``http-check`` step type: wait until a URL answers with the expected status (and body
text), from each target of the step's roles, or once from the appliance.

The check itself is target-side code (:mod:`octo_http_check.target.probe`, the runner command
``http-check``), shipped to agents in the plugin's bundle; ``run_on: appliance`` runs the
same command on the appliance's built-in worker. A check only reads, so it does not take a
target's mutex: it may run beside a deployment on the same target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from octo_appliance.hookspecs import hookimpl
from octo_appliance.plugins import StepTypeRegistry
from octo_appliance.steps.base import (
    FieldProblem,
    RunnerRequest,
    StepContext,
    StepFailed,
    StepTarget,
    StepType,
    TargetCode,
)

COMMAND = "http-check"
RUN_ON = ("targets", "appliance")
METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Property:
    """One property of the step: its type, default and help (what a form shows)."""

    name: str
    type: str
    help: str
    required: bool = False
    default: Any = None


PROPERTIES: tuple[Property, ...] = (
    Property("url", "string", "the URL to request (http:// or https://)", required=True),
    Property("run_on", "string", "targets (from each target) or appliance", default="targets"),
    Property("method", "string", "GET or HEAD", default="GET"),
    Property("expected_status", "integer", "the HTTP status that counts as up", default=200),
    Property("expected_body", "string", "text the body must contain (empty: any)", default=""),
    Property("timeout_seconds", "number", "how long to wait in all", default=60),
    Property("interval_seconds", "number", "pause between attempts", default=2),
    Property("request_timeout_seconds", "number", "how long one attempt waits", default=10),
    Property("max_attempts", "integer", "stop after this many attempts (0: no limit)", default=0),
    Property("verify_tls", "boolean", "check the server's certificate", default=True),
)
_BY_NAME = {p.name: p for p in PROPERTIES}


def _problem(prop: Property, value: Any) -> str | None:
    """Why ``value`` does not fit ``prop`` (None: it does). A string may hold ``#{...}``,
    checked again once substituted."""
    if prop.type == "string":
        return None if isinstance(value, str) else "must be text"
    if prop.type == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(value, str) and "#{" in value:
        return None
    number = _number(value)
    if number is None or number < 0:
        return "must be a number, 0 or more"
    if prop.type == "integer" and number != int(number):
        return "must be a whole number"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def check_properties(properties: dict[str, Any]) -> list[FieldProblem]:
    problems = [
        FieldProblem(key, "is not a property of http-check")
        for key in sorted(set(properties) - set(_BY_NAME))
    ]
    for prop in PROPERTIES:
        value = properties.get(prop.name)
        if value is None:
            if prop.required:
                problems.append(FieldProblem(prop.name, f"is required: {prop.help}"))
            continue
        problem = _problem(prop, value)
        if problem is not None:
            problems.append(FieldProblem(prop.name, problem))
    url = properties.get("url")
    if isinstance(url, str) and not url.startswith(("http://", "https://", "#{")):
        problems.append(FieldProblem("url", "must start with http:// or https://"))
    if properties.get("run_on", "targets") not in RUN_ON:
        problems.append(FieldProblem("run_on", "must be targets or appliance"))
    if properties.get("method", "GET") not in METHODS:
        problems.append(FieldProblem("method", "must be GET or HEAD"))
    return problems


def arguments(values: dict[str, Any]) -> dict[str, Any]:
    """The runner command's arguments from substituted properties (defaults filled in)."""
    result: dict[str, Any] = {}
    for prop in PROPERTIES:
        if prop.name == "run_on":
            continue
        value = values.get(prop.name, prop.default)
        if prop.type in ("number", "integer"):
            number = _number(value)
            if number is None or number < 0:
                raise StepFailed(f"http-check: {prop.name} must be a number, not {value!r}")
            value = int(number) if prop.type == "integer" else number
        result[prop.name] = value
    return result


class HttpCheck(StepType):
    name = "http-check"
    summary = "Wait until a URL answers with the expected status, from each target or the appliance"
    target_code = TargetCode("octo_http_check.target", {COMMAND: "probe:run"})
    properties = PROPERTIES

    def validate(self, properties: dict[str, Any]) -> list[FieldProblem]:
        return check_properties(properties)

    def targets_machines(self, properties: dict[str, Any]) -> bool:
        return properties.get("run_on", "targets") != "appliance"

    def runs_on_appliance(self, properties: dict[str, Any]) -> bool:
        return properties.get("run_on", "targets") == "appliance"

    async def execute(self, ctx: StepContext) -> None:
        def request(target: StepTarget | None) -> RunnerRequest:
            values = ctx.properties_for(target)
            return RunnerRequest(COMMAND, arguments(values), exclusive=False)

        if not self.targets_machines(ctx.step.properties):
            run = await ctx.run_on_appliance(request(None))
            if not run.succeeded:
                raise StepFailed(f"from the appliance: {run.message}")
            return
        runs = await ctx.run_on_targets(request)
        failed = [run for run in runs if run.state in ("failed", "canceled")]
        if failed:
            names = ", ".join(run.target.name for run in failed)
            raise StepFailed(
                f"the URL did not answer as expected from {len(failed)} of {len(runs)} "
                f"target(s): {names}; {failed[0].message}"
            )


@hookimpl
def register_step_types(registry: StepTypeRegistry) -> None:
    registry.add(HttpCheck)
