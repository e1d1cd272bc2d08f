"""Releases: ``/api/v1/projects/{ref}/releases`` and ``/api/v1/releases/{id}``.

A release is an immutable snapshot of the project's process, lifecycle and variables (see
:mod:`octo_appliance.engine.releases`); only ``POST /releases/{id}/snapshot-variables``
changes its variables copy, on request. Sensitive values stay sealed in the release and are
never returned (``"value": null``).

Permissions, on the release's project: reading needs ``project.view`` (and ``variable.view``
to see the variables; without it ``variables`` is null); creating a release and refreshing its
variables need ``deployment.create`` (cutting a release is part of deploying); deleting one
needs ``project.edit``.
"""

from __future__ import annotations

from typing import Any

import peewee
from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.lifecycles import PhaseOut
from octo_appliance.api.process import StepOut
from octo_appliance.api.refs import get_or_404, paginate
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import NAME_PATTERN, Body, Deleted, Line, ListQuery, Out, Text
from octo_appliance.api.variable_lists import VariableScopeOut, scope_json
from octo_appliance.api.worker_access import appliance_steps, require_worker_use
from octo_appliance.db import Deployment, Environment, Project, Release
from octo_appliance.db.base import fk_id, iso, tuples
from octo_appliance.db.tasks import FINAL_STATES, SUCCESS
from octo_appliance.engine import release_packages
from octo_appliance.engine import releases as engine
from octo_appliance.engine.lifecycles import deployment_states, existing_phases, progress
from octo_appliance.exceptions import Conflict, NotFound, ValidationFailed
from octo_appliance.feed.names import is_version
from octo_appliance.security.permissions import Permission

router = Router("releases")


class PackageChoiceIn(Body):
    package: str = Field(
        min_length=1, pattern=NAME_PATTERN, max_length=200, description="A feed package id."
    )
    version: str = Field(min_length=1, pattern=NAME_PATTERN, max_length=100)
    step: Line | None = Field(
        None, max_length=200, description="Only for this step (when several deploy it)."
    )


class ReleasePackageOut(Out):
    step: str
    package_id: str
    version: str
    sha256: str


class ReleaseIn(Body):
    version: Line | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="A semantic version; left out: the highest version's patch plus one.",
    )
    notes: Text = Field("", max_length=100_000)
    packages: list[PackageChoiceIn] = Field(
        default_factory=list,
        max_length=200,
        description="Package versions to pin; a package left out gets its latest version.",
    )


class SnapshotVariableOut(Out):
    name: str
    value: str | None = Field(description="Always null for a sensitive variable.")
    sensitive: bool
    scope: VariableScopeOut
    source: str = Field(description='"project" or "library:<set name>".')


class DeploymentBriefOut(Out):
    id: str
    state: str
    created_at: str | None
    finished_at: str | None


class EnvironmentProgressOut(Out):
    environment_id: str
    environment_name: str
    phase: str
    can_deploy: bool
    reason: str | None
    deployment: DeploymentBriefOut | None


class ReleaseSummaryOut(Out):
    id: str
    project_id: str
    version: str
    notes: str
    process_version: int
    created_at: str
    created_by: str


class ReleaseOut(ReleaseSummaryOut):
    steps: list[StepOut]
    lifecycle: list[PhaseOut]
    variables: list[SnapshotVariableOut] | None = Field(
        description="null without variable.view on the project."
    )
    environments: list[EnvironmentProgressOut]
    packages: list[ReleasePackageOut] = Field(
        description="The exact package versions the release deploys, per step."
    )


def summary_json(release: Any) -> dict[str, Any]:
    """From a model row or a plain row (whose ``project`` is the id)."""
    project = fk_id(release, "project") if isinstance(release, Release) else release.project
    return {
        "id": release.id,
        "project_id": project,
        "version": release.version,
        "notes": release.notes,
        "process_version": release.process_version,
        "created_at": iso(release.created_at),
        "created_by": release.created_by,
    }


def release_json(ctx: RequestContext, release: Release) -> dict[str, Any]:
    variables = None
    if ctx.user.can(Permission.VARIABLE_VIEW, project=fk_id(release, "project")):
        variables = [
            {
                "name": item["name"],
                "value": None if item["sensitive"] else item["value"],
                "sensitive": item["sensitive"],
                "scope": scope_json(item.get("scope")),
                "source": item["source"],
            }
            for item in release.variables_snapshot or []
        ]
    return {
        **summary_json(release),
        "steps": list(release.process_snapshot or []),
        "lifecycle": existing_phases(release.lifecycle_snapshot or []),
        "variables": variables,
        "environments": progress(release),
        "packages": release_packages.pins_json(release.id, release.process_snapshot or []),
    }


def release_for(ctx: RequestContext, release_id: str, permission: Permission) -> Release:
    """The release by id, checked against ``permission`` on its project."""
    release = Release.get_or_none(Release.id == release_id)
    if release is None:
        raise NotFound(f"no release with id '{release_id}'")
    ctx.require(permission, project=fk_id(release, "project"))
    return release


@router.create(
    "/projects/{ref}/releases",
    "Create a release (snapshot of the process, lifecycle and variables)",
    ReleaseIn,
    ReleaseOut,
)
def create_release(ctx: RequestContext, ref: str, body: ReleaseIn) -> dict[str, Any]:
    """``version`` must be a semantic version (``1.2.3``, ``1.2.3-beta.1``, ``1.2.3+build.5``);
    left out, it is the highest existing version with its patch number plus one (``0.0.1``
    for the first). A version the project already has is a 409."""
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.DEPLOYMENT_CREATE, project=project.id)
    if body.version is None:
        version = engine.next_version(engine.project_versions(project.id))
    else:
        version = body.version
        if not is_version(version):
            raise ValidationFailed(
                f"'{version}' is not a semantic version",
                details=[{"field": "version", "message": "expected MAJOR.MINOR.PATCH"}],
                hint="write it like 1.4.0, 1.4.0-rc.1 or 1.4.0+build.7, or leave it out",
            )
    duplicate = Conflict(
        f"project '{project.name}' already has a release {version}",
        hint="choose another version, or leave it out to take the next one",
    )
    if engine.version_taken(project.id, version):
        raise duplicate
    try:
        with ctx.appliance.db.atomic():  # a savepoint: a concurrent create may take the version
            release = engine.create_release(
                ctx.appliance.vault, project, version, body.notes, ctx.user.username
            )
            registry = ctx.appliance.plugins.step_types
            on_appliance = appliance_steps(release.process_snapshot or [], registry)
            require_worker_use(
                ctx, on_appliance, "create a release of this process", project=project.id
            )
            needed = release_packages.packages_needed(release.process_snapshot or [], registry)
            choices = [
                release_packages.PackageChoice(c.package, c.version, c.step) for c in body.packages
            ]
            pinned = release_packages.choose(needed, choices)
            release_packages.pin(release.id, pinned)
    except peewee.IntegrityError:
        raise duplicate from None
    except release_packages.PinProblem as exc:
        raise ValidationFailed(
            exc.message,
            details=[{"field": "packages", "message": exc.message}],
            hint=exc.hint,
        ) from None
    ctx.audit(
        "create",
        "release",
        release.id,
        f"{project.name} {release.version}",
        {
            "project_id": project.id,
            "version": release.version,
            "process_version": release.process_version,
            "variables": len(release.variables_snapshot),
            "packages": {f"{step}/{row.package_id}": row.version for step, row in pinned},
        },
    )
    return release_json(ctx, release)


@router.listing(
    "/projects/{ref}/releases", "List a project's releases, newest first", ReleaseSummaryOut
)
def list_releases(ctx: RequestContext, ref: str, query: ListQuery) -> dict[str, Any]:
    """``name`` matches part of the version."""
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_VIEW, project=project.id)
    rows = Release.select(
        Release.id,
        Release.project,
        Release.version,
        Release.notes,
        Release.process_version,
        Release.created_at,
        Release.created_by,
    ).where(Release.project == project.id)
    if query.name:
        rows = rows.where(Release.version.contains(query.name))
    return paginate(
        rows,
        query,
        summary_json,
        Release.created_at.desc(),
        Release.id.desc(),
        plain_rows=True,
    )


@router.get(
    "/projects/{ref}/releases/{version}",
    summary="Get a release by its version (or id) within a project",
    response=ReleaseOut,
)
def get_project_release(ctx: RequestContext, ref: str, version: str) -> dict[str, Any]:
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_VIEW, project=project.id)
    release = Release.get_or_none(
        (Release.project == project.id) & ((Release.version == version) | (Release.id == version))
    )
    if release is None:
        raise NotFound(f"project '{project.name}' has no release '{version}'")
    return release_json(ctx, release)


@router.get("/releases/{release_id}", summary="Get a release", response=ReleaseOut)
def get_release(ctx: RequestContext, release_id: str) -> dict[str, Any]:
    """With the snapshot and, per environment of its lifecycle, whether it may be deployed
    there now and its latest deployment there."""
    return release_json(ctx, release_for(ctx, release_id, Permission.PROJECT_VIEW))


def _live_environments(release: Release) -> list[str]:
    """Environments where this release is the latest successful deployment of its project."""
    current: dict[str, str] = {}
    for state in deployment_states(Deployment.project == fk_id(release, "project")):
        if state.state == SUCCESS:
            current.setdefault(state.environment_id, state.release_id)
    env_ids = sorted(env for env, rel in current.items() if rel == release.id)
    if not env_ids:
        return []
    query = Environment.select(Environment.name).where(Environment.id.in_(env_ids))
    return sorted(name for (name,) in tuples(query))


@router.delete(
    "/releases/{release_id}",
    summary="Delete a release (not while it is live somewhere)",
    response=Deleted,
    errors=(409,),
)
def delete_release(ctx: RequestContext, release_id: str) -> dict[str, Any]:
    """409 while it is the current (latest successful) deployment of its project in any
    environment, or while a deployment of it is queued or running. Its deployment records
    go with it."""
    release = release_for(ctx, release_id, Permission.PROJECT_EDIT)
    live = _live_environments(release)
    if live:
        raise Conflict(
            f"release {release.version} is deployed to a live environment: {', '.join(live)}",
            hint="deploy another release there first",
        )
    running = [
        state
        for state in deployment_states(Deployment.release == release.id)
        if state.state not in FINAL_STATES
    ]
    if running:
        raise Conflict(
            f"release {release.version} has {len(running)} deployment(s) queued or running",
            hint="wait for them to finish or cancel their tasks first",
        )
    name = f"{release.project.name} {release.version}"
    release.delete_instance()
    ctx.audit("delete", "release", release.id, name, {"project_id": fk_id(release, "project")})
    return {"id": release.id, "deleted": True}


@router.post(
    "/releases/{release_id}/snapshot-variables",
    summary="Refresh a release's variables snapshot from the project's current variables",
    response=ReleaseOut,
)
def refresh_release_variables(ctx: RequestContext, release_id: str) -> dict[str, Any]:
    """Only the variables change; the process and lifecycle copies stay as they were."""
    release = release_for(ctx, release_id, Permission.DEPLOYMENT_CREATE)
    engine.refresh_variables(ctx.appliance.vault, release)
    ctx.audit(
        "refresh-variables",
        "release",
        release.id,
        f"{release.project.name} {release.version}",
        {"variables": len(release.variables_snapshot)},
    )
    return release_json(ctx, release)
