"""``POST /api/v1/scripts``: the script console, one script on many targets at once (or
``window`` at a time).

The script runs through each target's runner with ``#{Name}`` references substituted; the
references are checked here first, so a typo is a 422 before anything runs. Sensitive
variables are sealed with the task and masked in its log.
"""

from __future__ import annotations

from typing import Any, Literal

from octo_runner.substitution import SubstitutionError, substitute
from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import resolve_many
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import NAME_PATTERN, Body, Line, Out, Text, line_keys
from octo_appliance.api.tasks import enqueue_for_request
from octo_appliance.api.worker_access import require_worker_use_for_console
from octo_appliance.db import Environment, Target
from octo_appliance.engine import console
from octo_appliance.engine.targets import select_targets
from octo_appliance.exceptions import ValidationFailed
from octo_appliance.security.permissions import Permission

router = Router("scripts")


class SensitiveValue(Body):
    value: Text = Field(max_length=65_536)
    sensitive: bool = True


class ScriptIn(Body):
    environment: str | None = Field(None, min_length=1, pattern=NAME_PATTERN, max_length=200)
    roles: list[Line] = Field(default_factory=list, max_length=100)
    targets: list[Line] = Field(default_factory=list, max_length=1000)
    syntax: Literal["bash", "sh", "python", "pwsh"]
    body: Text = Field(min_length=1, max_length=1_000_000)
    variables: dict[Line, Text | SensitiveValue] = Field(
        default_factory=dict, max_length=1000, json_schema_extra=line_keys
    )
    timeout: int | None = Field(None, ge=1, le=86_400, description="Seconds before it is stopped.")
    window: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Most targets the script runs on at once: as one finishes the next starts "
        "(a rolling window). Default: every target at once.",
    )


class ScriptTarget(Out):
    id: str
    name: str


class ScriptQueued(Out):
    id: str
    task_id: str
    targets: list[ScriptTarget]


def _check_references(body: ScriptIn, names: set[str]) -> None:
    known = {name: "x" for name in names}
    for prefix in ("Octo", "Octopus"):
        for key in ("Task.Id", "Machine.Name", "Machine.Id", "Environment.Id", "Environment.Name"):
            known[f"{prefix}.{key}"] = "x"
    try:
        substitute(body.body, known, strict=True)
    except SubstitutionError as exc:
        raise ValidationFailed(
            f"the script cannot be substituted: {exc}",
            details=[{"field": "body", "message": str(exc)}],
            hint="define the variable, or write ##{...} for a literal #{...}",
        ) from None


@router.post(
    "/scripts",
    summary="Run a script on every matching target at once (script console)",
    body=ScriptIn,
    response=ScriptQueued,
    status_code=202,
    errors=(422, 503),
)
def run_script(ctx: RequestContext, body: ScriptIn) -> dict[str, Any]:
    """Needs ``script.run`` in the environment (or unscoped, for targets named directly), and
    ``worker.use`` unscoped when a chosen target is the built-in worker (style ``local``)."""
    if body.environment is None and not body.targets:
        raise ValidationFailed(
            "say where to run the script",
            details=[{"field": "environment", "message": "give an environment or targets"}],
        )
    env = None
    if body.environment is not None:
        env = resolve_many(Environment, [body.environment], "environment", "environment")[0]
        ctx.require(Permission.SCRIPT_RUN, environment=env.id)
    else:
        ctx.require_unscoped(Permission.SCRIPT_RUN)
    named = resolve_many(Target, body.targets, "target", "targets")
    chosen = select_targets(env.id if env else None, body.roles, [t.id for t in named])
    if not chosen:
        raise ValidationFailed(
            "no enabled target matches the environment, roles and targets given",
            details=[{"field": "roles", "message": "no target has these roles there"}],
        )
    require_worker_use_for_console(ctx, (t.communication_style for t in chosen))
    plain = {k: v for k, v in body.variables.items() if isinstance(v, str)}
    secret = {k: v.value for k, v in body.variables.items() if isinstance(v, SensitiveValue)}
    plain.update(
        {
            k: v.value
            for k, v in body.variables.items()
            if isinstance(v, SensitiveValue) and not v.sensitive
        }
    )
    secret = {k: v for k, v in secret.items() if k not in plain}
    _check_references(body, set(plain) | set(secret))
    arguments: dict[str, Any] = {
        "syntax": body.syntax,
        "body": body.body,
        "target_ids": [t.id for t in chosen],
        "variables": plain,
    }
    if env is not None:
        arguments["environment_name"] = env.name
    if body.window is not None:
        arguments["window"] = body.window
    task_id = enqueue_for_request(
        ctx,
        console.KIND,
        f"Script on {len(chosen)} target(s)" + (f" in {env.name}" if env else ""),
        arguments,
        {"variables": secret} if secret else None,
        environment_id=env.id if env else None,
        timeout_seconds=body.timeout,
    )
    ctx.audit(
        "run-script",
        "task",
        task_id,
        f"{body.syntax} script",
        {
            "targets": [t.name for t in chosen],
            "variables": sorted(plain),
            "sensitive_variables": sorted(secret),
        },
    )
    return {
        "id": task_id,
        "task_id": task_id,
        "targets": [{"id": t.id, "name": t.name} for t in chosen],
    }
