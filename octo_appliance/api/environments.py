"""``/api/v1/environments``: where releases are deployed (Dev, Test, Prod ...)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404, name_filter, paginate, require_unique_name
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Body, Deleted, ListQuery, Out, Page, Text, name_field
from octo_appliance.db import Environment, TargetEnvironment
from octo_appliance.db.base import iso
from octo_appliance.exceptions import Conflict
from octo_appliance.security.permissions import Permission

router = Router("environments")


class EnvironmentIn(Body):
    name: str = name_field()
    description: Text = Field("", max_length=10_000)
    sort_order: int = Field(0, ge=-1_000_000, le=1_000_000)


class EnvironmentUpdate(Body):
    name: str | None = name_field(None)
    description: Text | None = Field(None, max_length=10_000)
    sort_order: int | None = Field(None, ge=-1_000_000, le=1_000_000)


class EnvironmentOut(Out):
    id: str
    name: str
    description: str
    sort_order: int
    created_at: str


def to_json(env: Environment) -> dict[str, Any]:
    return {
        "id": env.id,
        "name": env.name,
        "description": env.description,
        "sort_order": env.sort_order,
        "created_at": iso(env.created_at),
    }


@router.get(
    "/environments",
    summary="List environments",
    query=ListQuery,
    response=Page[EnvironmentOut],
    cache=True,
)
def list_environments(ctx: RequestContext, query: ListQuery) -> dict[str, Any]:
    ctx.require(Permission.ENVIRONMENT_VIEW)
    rows = name_filter(Environment.select(), Environment.name, query.name)
    rows = ctx.only_visible(rows, Permission.ENVIRONMENT_VIEW, "environments", Environment.id)
    return paginate(rows, query, to_json, Environment.sort_order, Environment.name, plain_rows=True)


@router.create("/environments", "Create an environment", EnvironmentIn, EnvironmentOut)
def create_environment(ctx: RequestContext, body: EnvironmentIn) -> dict[str, Any]:
    ctx.require_unscoped(Permission.ENVIRONMENT_EDIT)
    require_unique_name(Environment, body.name, "environment")
    env = Environment.create_new(**body.model_dump())
    ctx.audit("create", "environment", env.id, env.name, body.model_dump())
    return to_json(env)


@router.get(
    "/environments/{ref}", summary="Get an environment", response=EnvironmentOut, cache=True
)
def get_environment(ctx: RequestContext, ref: str) -> dict[str, Any]:
    env = get_or_404(Environment, ref, "environment")
    ctx.require(Permission.ENVIRONMENT_VIEW, environment=env.id)
    return to_json(env)


@router.update(
    "/environments/{ref}",
    "Update an environment (fields left out keep their value)",
    EnvironmentUpdate,
    EnvironmentOut,
)
def update_environment(ctx: RequestContext, ref: str, body: EnvironmentUpdate) -> dict[str, Any]:
    env = get_or_404(Environment, ref, "environment")
    ctx.require(Permission.ENVIRONMENT_EDIT, environment=env.id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "name" in changes:
        require_unique_name(Environment, changes["name"], "environment", exclude=env.id)
    env.save_changes(changes)
    ctx.audit("update", "environment", env.id, env.name, changes)
    return to_json(env)


@router.delete(
    "/environments/{ref}", summary="Delete an environment", response=Deleted, errors=(409,)
)
def delete_environment(ctx: RequestContext, ref: str) -> dict[str, Any]:
    env = get_or_404(Environment, ref, "environment")
    ctx.require(Permission.ENVIRONMENT_EDIT, environment=env.id)
    in_use = TargetEnvironment.select().where(TargetEnvironment.environment == env.id).count()
    if in_use:
        raise Conflict(
            f"environment '{env.name}' still holds {in_use} target(s)",
            hint="move or delete its targets first",
        )
    env.delete_instance()
    ctx.audit("delete", "environment", env.id, env.name)
    return {"id": env.id, "deleted": True}
