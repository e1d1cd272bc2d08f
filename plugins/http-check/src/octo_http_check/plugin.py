"""The ``http-check`` step type: wait until a URL answers with the expected status (and body
text), from each target of the step's roles, or once from the appliance.

The check itself is target-side code (:mod:`octo_http_check.target.probe`, the runner command
``http-check``), shipped to agents in the plugin's bundle; ``run_on: appliance`` runs the
same command on the appliance's built-in worker. A check only reads, so it does not take a
target's mutex: it may run beside a deployment on the same target.
"""

from __future__ import annotations

from typing import Any

from octo_appliance import plugin_api as octo

#: the plugin API this plugin is written for (docs/plugins.md, "Plugin API version")
OCTO_PLUGIN_API = 2
COMMAND = "http-check"

PROPERTIES: tuple[octo.Property, ...] = (
    octo.Property("url", "string", "the URL to request (http:// or https://)", required=True),
    octo.Property(
        "run_on",
        "string",
        "targets: from each target of the step's roles; appliance: once, from the appliance",
        default="targets",
        enum=("targets", "appliance"),
    ),
    octo.Property("method", "string", "the request method", default="GET", enum=("GET", "HEAD")),
    octo.Property(
        "expected_status",
        "integer",
        "the HTTP status that counts as up",
        default=200,
        minimum=100,
        maximum=599,
    ),
    octo.Property("expected_body", "string", "text the body must contain (empty: any body)"),
    octo.Property("timeout_seconds", "integer", "how long to wait in all", default=60, minimum=1),
    octo.Property("interval_seconds", "integer", "pause between attempts", default=2, minimum=0),
    octo.Property(
        "request_timeout_seconds", "integer", "how long one attempt waits", default=10, minimum=1
    ),
    octo.Property(
        "max_attempts", "integer", "stop after this many attempts (0: no limit)", default=0
    ),
    octo.Property("verify_tls", "boolean", "check the server's certificate", default=True),
)


def arguments(values: dict[str, Any]) -> dict[str, Any]:
    """The runner command's arguments from substituted properties, defaults filled in."""
    found = {
        prop.name: values.get(prop.name, prop.default)
        for prop in PROPERTIES
        if prop.name != "run_on"
    }
    found["expected_body"] = found["expected_body"] or ""
    return found


class HttpCheck(octo.StepType):
    name = "http-check"
    summary = "Wait until a URL answers with the expected status, from each target or the appliance"
    properties = PROPERTIES
    target_code = octo.TargetCode("octo_http_check.target", {COMMAND: "probe:run"})

    def validate(self, properties: dict[str, Any]) -> list[octo.FieldProblem]:
        url = properties.get("url")
        if isinstance(url, str) and not url.startswith(("http://", "https://", "#{")):
            return [octo.FieldProblem("url", "must start with http:// or https://")]
        return []

    def targets_machines(self, properties: dict[str, Any]) -> bool:
        return not self.runs_on_appliance(properties)

    def runs_on_appliance(self, properties: dict[str, Any]) -> bool:
        return bool(properties.get("run_on") == "appliance")

    async def execute(self, ctx: octo.StepContext) -> None:
        def request(target: octo.StepTarget | None) -> octo.RunnerRequest:
            return octo.RunnerRequest(
                COMMAND, arguments(ctx.properties_for(target)), exclusive=False
            )

        if not self.targets_machines(ctx.step.properties):
            run = await ctx.run_on_appliance(request(None))
            if not run.succeeded:
                raise octo.StepFailed(f"from the appliance: {run.message}")
            return
        problems = [
            f"{run.target.name}: {run.message}"
            for run in await ctx.run_on_targets(request)
            if not run.succeeded and run.state != "skipped"
        ]
        if problems:
            raise octo.StepFailed("the URL did not answer as expected from " + "; ".join(problems))


@octo.hookimpl
def register_step_types(registry: octo.StepTypeRegistry) -> None:
    registry.add(HttpCheck)
