"""``/api/v1/deployments``: deploy a release to an environment, and follow deployments.

``POST`` checks the lifecycle (a release may only go where its lifecycle has reached: 409 with
the reason), the step names to skip (a ``required`` step cannot be skipped: 422) and the
targets, then creates the deployment and its server task (kind ``deployment``), which the
deployment executor runs. Deploying needs ``deployment.create`` on the release's project in
the environment. Reading needs ``project.view`` covering both the project and the
environment; lists show only such deployments.

A deployment's ``state`` mirrors its task: the task's state until the executor has written the
deployment's final state.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import peewee
from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404, paginate, resolve_many
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import NAME_PATTERN, Body, Line, ListQuery, Out
from octo_appliance.api.tasks import enqueue_for_request
from octo_appliance.api.worker_access import appliance_steps, require_worker_use
from octo_appliance.db import Deployment, Environment, Project, Release, Target, TargetEnvironment
from octo_appliance.db.base import fk_id, iso, tuples, utcnow
from octo_appliance.db.tasks import ServerTask
from octo_appliance.engine.lifecycles import can_deploy, effective_state, queue_deployment
from octo_appliance.exceptions import Conflict, Forbidden, NotFound, ValidationFailed
from octo_appliance.security.permissions import Permission, grant_condition

router = Router("deployments")

MAX_QUEUE_AHEAD = timedelta(days=366)


# ---------------------------------------------------------------- scope


# ---------------------------------------------------------------- shapes


class DeploymentIn(Body):
    release: str = Field(
        min_length=1, pattern=NAME_PATTERN, max_length=40, description="The release id."
    )
    environment: str = Field(
        min_length=1, pattern=NAME_PATTERN, max_length=200, description="Id or name."
    )
    skip_steps: list[Line] = Field(default_factory=list, max_length=200, description="Step names.")
    targets: list[Line] = Field(
        default_factory=list, max_length=1000, description="Only these targets (ids or names)."
    )
    exclude_targets: list[Line] = Field(
        default_factory=list, max_length=1000, description="Not these targets (ids or names)."
    )
    guided_failure: bool = Field(False, description="Pause for a decision when a step fails.")
    queue_time: datetime | None = Field(
        None,
        description="Start no earlier than this (ISO 8601; without offset: UTC).",
        strict=False,  # JSON has no datetime type: an ISO 8601 string
    )
    force: bool = Field(False, description="Redeploy everything even where nothing changed.")


class DeploymentListQuery(ListQuery):
    project: Line | None = Field(None, max_length=200, description="Project id or name.")
    environment: Line | None = Field(None, max_length=200, description="Environment id or name.")
    release: Line | None = Field(None, max_length=40, description="Release id.")


class DeploymentOptionsOut(Out):
    skip_steps: list[str]
    targets: list[str]
    exclude_targets: list[str]
    guided_failure: bool
    force: bool
    queue_time: str | None


class DeploymentOut(Out):
    id: str
    task_id: str
    release: str
    release_version: str
    project: str
    environment: str
    state: str
    error: str | None
    options: DeploymentOptionsOut
    created_at: str
    created_by: str
    finished_at: str | None


def _rows() -> Any:
    return (
        Deployment.select(
            Deployment,
            Release.version.alias("release_version"),
            ServerTask.state.alias("task_state"),
            ServerTask.error.alias("task_error"),
            ServerTask.finished_at.alias("task_finished"),
        )
        .join(Release, on=(Release.id == Deployment.release))
        .switch(Deployment)
        .join(ServerTask, peewee.JOIN.LEFT_OUTER, on=(ServerTask.id == Deployment.task_id))
    )


def to_json(row: Any) -> dict[str, Any]:
    """From a plain row of :func:`_rows`."""
    options = row.options or {}
    state = effective_state(row.state, row.task_state)
    return {
        "id": row.id,
        "task_id": row.task_id,
        "release": row.release,
        "release_version": row.release_version,
        "project": row.project,
        "environment": row.environment,
        "state": state,
        "error": row.task_error or None,
        "options": {
            "skip_steps": list(options.get("skip_steps", [])),
            "targets": list(options.get("targets", [])),
            "exclude_targets": list(options.get("exclude_targets", [])),
            "guided_failure": bool(options.get("guided_failure", False)),
            "force": bool(options.get("force", False)),
            "queue_time": options.get("queue_time"),
        },
        "created_at": iso(row.created_at),
        "created_by": row.created_by,
        "finished_at": iso(row.finished_at or (row.task_finished if state != row.state else None)),
    }


def deployment_json(deployment_id: str) -> dict[str, Any]:
    row = _rows().where(Deployment.id == deployment_id).dicts().first()
    if row is None:
        raise NotFound(f"no deployment with id '{deployment_id}'")
    return to_json(SimpleNamespace(**row))


# ---------------------------------------------------------------- checks


def _skip_steps(release: Release, names: list[str]) -> list[str]:
    steps = {step["name"].casefold(): step for step in release.process_snapshot or []}
    errors = []
    chosen = []
    for name in dict.fromkeys(names):
        step = steps.get(name.casefold())
        if step is None:
            errors.append(f"release {release.version} has no step named '{name}'")
        elif step.get("required"):
            errors.append(f"step '{step['name']}' is required and cannot be skipped")
        else:
            chosen.append(step["name"])
    if errors:
        raise ValidationFailed(
            errors[0],
            details=[{"field": "skip_steps", "message": message} for message in errors],
            hint="skip only optional steps of this release's process",
        )
    return list(dict.fromkeys(chosen))


def _appliance_steps_run(
    ctx: RequestContext, release: Release, environment_id: str, skipped: list[str]
) -> list[str]:
    """The release's steps that would run on the appliance in this deployment (not skipped,
    not limited to other environments): the deployer needs ``worker.use`` for them."""
    steps = [
        step
        for step in release.process_snapshot or []
        if step.get("name") not in skipped
        and (not step.get("environments") or environment_id in step["environments"])
    ]
    return appliance_steps(steps, ctx.appliance.plugins.step_types)


def _targets(refs: list[str], environment: Environment, field: str) -> list[str]:
    targets = resolve_many(Target, refs, "target", field)
    if not targets:
        return []
    query = TargetEnvironment.select(TargetEnvironment.target).where(
        TargetEnvironment.environment == environment.id,
        TargetEnvironment.target.in_([t.id for t in targets]),
    )
    inside = {target_id for (target_id,) in tuples(query)}
    outside = [t.name for t in targets if t.id not in inside]
    if outside:
        raise ValidationFailed(
            f"not in environment '{environment.name}': {', '.join(outside)}",
            details=[{"field": field, "message": f"'{name}' is not there"} for name in outside],
            hint="name targets of the environment being deployed to",
        )
    return [t.id for t in targets]


def _queue_time(moment: datetime | None) -> datetime | None:
    """As naive UTC, within a year from now (422 otherwise)."""
    if moment is None:
        return None
    try:
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        too_late = moment > utcnow() + MAX_QUEUE_AHEAD
    except (OverflowError, ValueError):
        too_late = True
    if too_late:
        raise ValidationFailed(
            "queue_time is more than a year ahead",
            details=[{"field": "queue_time", "message": "at most 366 days from now"}],
        )
    return moment


# ---------------------------------------------------------------- endpoints


@router.post(
    "/deployments",
    summary="Deploy a release to an environment",
    body=DeploymentIn,
    response=DeploymentOut,
    status_code=201,
    errors=(409, 503),
)
def create_deployment(ctx: RequestContext, body: DeploymentIn) -> dict[str, Any]:
    """409 with the reason when the release's lifecycle has not reached the environment yet;
    422 for unknown or required ``skip_steps`` and for targets outside the environment;
    503 when the task engine is not running on this node."""
    release = Release.get_or_none(Release.id == body.release)
    if release is None:
        raise ValidationFailed(
            f"no release with id '{body.release}'",
            details=[{"field": "release", "message": "unknown release id"}],
            hint="GET /api/v1/projects/{project}/releases lists the release ids",
        )
    environment = resolve_many(Environment, [body.environment], "environment", "environment")[0]
    ctx.require(
        Permission.DEPLOYMENT_CREATE, project=fk_id(release, "project"), environment=environment.id
    )
    allowed, reason = can_deploy(release, environment.id)
    if not allowed:
        raise Conflict(reason, hint="deploy it to the earlier phases of its lifecycle first")
    skip_steps = _skip_steps(release, body.skip_steps)
    require_worker_use(
        ctx,
        _appliance_steps_run(ctx, release, environment.id, skip_steps),
        "deploy this release",
        project=fk_id(release, "project"),
        environment=environment.id,
    )
    options = {
        "skip_steps": skip_steps,
        "targets": _targets(body.targets, environment, "targets"),
        "exclude_targets": _targets(body.exclude_targets, environment, "exclude_targets"),
        "guided_failure": body.guided_failure,
        "force": body.force,
    }
    not_before = _queue_time(body.queue_time)
    deployment = queue_deployment(
        functools.partial(enqueue_for_request, ctx),
        release,
        environment,
        options,
        created_by=ctx.user.username,
        not_before=not_before,
    )
    ctx.audit(
        "create",
        "deployment",
        deployment.id,
        f"{release.project.name} {release.version} to {environment.name}",
        {"release_id": release.id, "environment_id": environment.id, "task_id": deployment.task_id}
        | options,
    )
    return deployment_json(deployment.id)


@router.listing(
    "/deployments", "List deployments, newest first", DeploymentOut, query=DeploymentListQuery
)
def list_deployments(ctx: RequestContext, query: DeploymentListQuery) -> dict[str, Any]:
    """Filter by ``project`` and ``environment`` (ids or names) and ``release`` (id)."""
    ctx.require(Permission.PROJECT_VIEW)
    rows = _rows()
    if query.project:
        rows = rows.where(Deployment.project == get_or_404(Project, query.project, "project").id)
    if query.environment:
        env = get_or_404(Environment, query.environment, "environment")
        rows = rows.where(Deployment.environment == env.id)
    if query.release:
        rows = rows.where(Deployment.release == query.release)
    condition = grant_condition(
        ctx.user, Permission.PROJECT_VIEW, Deployment.project, Deployment.environment
    )
    if condition is not None:
        rows = rows.where(condition)
    return paginate(
        rows, query, to_json, Deployment.created_at.desc(), Deployment.id.desc(), plain_rows=True
    )


@router.get("/deployments/{deployment_id}", summary="Get a deployment", response=DeploymentOut)
def get_deployment(ctx: RequestContext, deployment_id: str) -> dict[str, Any]:
    """The task (``task_id``) holds the per-step and per-target detail and the log."""
    ctx.require(Permission.PROJECT_VIEW)
    deployment = Deployment.get_or_none(Deployment.id == deployment_id)
    if deployment is None:
        raise NotFound(f"no deployment with id '{deployment_id}'")
    if not ctx.user.can(
        Permission.PROJECT_VIEW,
        project=fk_id(deployment, "project"),
        environment=fk_id(deployment, "environment"),
    ):
        raise Forbidden(
            "you lack the permission 'project.view' for the project or environment of this "
            "deployment",
            hint="ask an administrator to widen your team's grant",
        )
    return deployment_json(deployment.id)
