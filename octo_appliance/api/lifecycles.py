"""``/api/v1/lifecycles``: the phases of environments releases are promoted through.

Lifecycles are shared by projects, so they follow the project permissions without a project
scope: reading needs ``project.view`` (any scope), and writing needs an unscoped
``project.edit``, because one edit changes the rules of every project using the lifecycle.

Phases hold environments by id (given by id or name). An environment may appear in only one
phase of a lifecycle. ``minimum_environments`` 0 means all of the phase's environments.
Environments deleted since are left out of the answer. See ``docs/deployments.md``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import (
    get_or_404,
    name_filter,
    paginate,
    require_unique_name,
    resolve_many,
)
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Body, Deleted, ListQuery, Out, Page, Ref, Text, name_field
from octo_appliance.db import Environment, Lifecycle, Project, ProjectSettings
from octo_appliance.db.base import iso, tuples
from octo_appliance.engine.lifecycles import existing_phases, filter_phases
from octo_appliance.exceptions import Conflict, ValidationFailed
from octo_appliance.security.permissions import Permission

router = Router("lifecycles")

MAX_PHASES = 100
MAX_PHASE_ENVIRONMENTS = 500


class PhaseIn(Body):
    name: str = name_field()
    environments: list[Ref] = Field(
        min_length=1, max_length=MAX_PHASE_ENVIRONMENTS, description="Ids or names."
    )
    minimum_environments: int = Field(
        0, ge=0, le=MAX_PHASE_ENVIRONMENTS, description="0: all of the phase's environments."
    )
    automatic: bool = Field(
        False, description="Deploy to this phase automatically once the previous one is complete."
    )


class LifecycleIn(Body):
    name: str = name_field()
    description: Text = Field("", max_length=10_000)
    phases: list[PhaseIn] = Field(min_length=1, max_length=MAX_PHASES)


class LifecycleUpdate(Body):
    name: str | None = name_field(None)
    description: Text | None = Field(None, max_length=10_000)
    phases: list[PhaseIn] | None = Field(None, min_length=1, max_length=MAX_PHASES)


class PhaseOut(Out):
    name: str
    environments: list[str]
    minimum_environments: int
    automatic: bool


class LifecycleOut(Out):
    id: str
    name: str
    description: str
    phases: list[PhaseOut]
    created_at: str


def to_json(lifecycle: Lifecycle, present: set[str] | None = None) -> dict[str, Any]:
    phases = lifecycle.phases or []
    return {
        "id": lifecycle.id,
        "name": lifecycle.name,
        "description": lifecycle.description,
        "phases": existing_phases(phases) if present is None else filter_phases(phases, present),
        "created_at": iso(lifecycle.created_at),
    }


def resolve_phases(phases: list[PhaseIn]) -> list[dict[str, Any]]:
    """Phases with environment ids, or a 422 listing every problem."""
    refs = [ref for phase in phases for ref in phase.environments]
    found = {
        key: env.id
        for env in resolve_many(Environment, refs, "environment", "phases.environments")
        for key in (env.id, env.name)
    }
    errors: list[dict[str, str]] = []
    owner: dict[str, int] = {}
    names: set[str] = set()
    result = []
    for index, phase in enumerate(phases):
        at = f"phases.{index}"
        if phase.name.casefold() in names:
            errors.append({"field": f"{at}.name", "message": f"'{phase.name}' is listed twice"})
        names.add(phase.name.casefold())
        env_ids = list(dict.fromkeys(found[ref] for ref in phase.environments))
        for env_id in env_ids:
            if env_id in owner and owner[env_id] != index:
                errors.append(
                    {
                        "field": f"{at}.environments",
                        "message": f"environment '{env_id}' is already in phase {owner[env_id]}",
                    }
                )
            owner.setdefault(env_id, index)
        if phase.minimum_environments > len(env_ids):
            errors.append(
                {
                    "field": f"{at}.minimum_environments",
                    "message": f"the phase has only {len(env_ids)} environment(s)",
                }
            )
        result.append(
            {
                "name": phase.name,
                "environments": env_ids,
                "minimum_environments": phase.minimum_environments,
                "automatic": phase.automatic,
            }
        )
    if errors:
        raise ValidationFailed(
            f"the phases have {len(errors)} problem(s): {errors[0]['message']}",
            details=errors,
            hint="an environment may appear in one phase only; 0 means all environments",
        )
    return result


@router.get("/lifecycles", summary="List lifecycles", query=ListQuery, response=Page[LifecycleOut])
def list_lifecycles(ctx: RequestContext, query: ListQuery) -> dict[str, Any]:
    ctx.require(Permission.PROJECT_VIEW)
    rows = name_filter(Lifecycle.select(), Lifecycle.name, query.name)
    present = {env_id for (env_id,) in tuples(Environment.select(Environment.id))}
    return paginate(rows, query, lambda row: to_json(row, present), Lifecycle.name)


@router.create("/lifecycles", "Create a lifecycle", LifecycleIn, LifecycleOut)
def create_lifecycle(ctx: RequestContext, body: LifecycleIn) -> dict[str, Any]:
    """Needs ``project.edit`` through a grant limited to no project or environment."""
    ctx.require_unscoped(Permission.PROJECT_EDIT)
    require_unique_name(Lifecycle, body.name, "lifecycle")
    phases = resolve_phases(body.phases)
    lifecycle = Lifecycle.create_new(name=body.name, description=body.description, phases=phases)
    ctx.audit(
        "create",
        "lifecycle",
        lifecycle.id,
        lifecycle.name,
        {"description": body.description, "phases": phases},
    )
    return to_json(lifecycle)


@router.get("/lifecycles/{ref}", summary="Get a lifecycle", response=LifecycleOut)
def get_lifecycle(ctx: RequestContext, ref: str) -> dict[str, Any]:
    ctx.require(Permission.PROJECT_VIEW)
    return to_json(get_or_404(Lifecycle, ref, "lifecycle"))


@router.update(
    "/lifecycles/{ref}",
    "Update a lifecycle (fields left out keep their value)",
    LifecycleUpdate,
    LifecycleOut,
)
def update_lifecycle(ctx: RequestContext, ref: str, body: LifecycleUpdate) -> dict[str, Any]:
    """``phases``, when given, replace the whole list. Releases already created keep the
    phases they were created with."""
    lifecycle = get_or_404(Lifecycle, ref, "lifecycle")
    ctx.require_unscoped(Permission.PROJECT_EDIT)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "name" in changes:
        require_unique_name(Lifecycle, changes["name"], "lifecycle", exclude=lifecycle.id)
    if body.phases is not None:
        changes["phases"] = resolve_phases(body.phases)
    lifecycle.save_changes(changes)
    ctx.audit("update", "lifecycle", lifecycle.id, lifecycle.name, changes)
    return to_json(lifecycle)


@router.delete("/lifecycles/{ref}", summary="Delete a lifecycle", response=Deleted, errors=(409,))
def delete_lifecycle(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Refused (409) while a project uses it."""
    lifecycle = get_or_404(Lifecycle, ref, "lifecycle")
    ctx.require_unscoped(Permission.PROJECT_EDIT)
    users = (
        Project.select(Project.name)
        .join(ProjectSettings, on=(ProjectSettings.project == Project.id))
        .where(ProjectSettings.lifecycle == lifecycle.id)
        .order_by(Project.name)
    )
    names = [name for (name,) in tuples(users)]
    if names:
        raise Conflict(
            f"lifecycle '{lifecycle.name}' is used by project(s): {', '.join(names[:20])}",
            hint="give those projects another lifecycle first",
        )
    lifecycle.delete_instance()
    ctx.audit("delete", "lifecycle", lifecycle.id, lifecycle.name)
    return {"id": lifecycle.id, "deleted": True}
