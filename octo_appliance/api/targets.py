"""``/api/v1/targets``: the machines deployments run on, placed in environments, tagged by role.

Permissions follow the environments a target belongs to: it is visible to a user who may view
targets in any of its environments, and changing it needs ``target.edit`` in every environment
it is in (before and after the change), so a Dev-only editor cannot move a target into Prod.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import Field, field_validator

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import find, get_or_404, name_filter, resolve_many
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import (
    ROLE_PATTERN,
    Body,
    Deleted,
    Line,
    ListQuery,
    Out,
    Page,
    Ref,
    Role,
    name_field,
)
from octo_appliance.api.transport_settings import apply_settings, check_presence, settings_json
from octo_appliance.db import Environment, Target, TargetEnvironment, TargetRole
from octo_appliance.db.base import iso, new_id, tuples
from octo_appliance.exceptions import BadRequest, Conflict, ValidationFailed
from octo_appliance.plugin_api.registry import TransportRegistry
from octo_appliance.security.permissions import Permission

router = Router("targets")

#: styles every appliance understands, whatever transports the plugins add
BUILTIN_STYLES = ("none", "listening", "polling", "ssh")
#: no commas: role lists are written comma-separated in step settings and the CLI
URI_PATTERN = r"^$|^[A-Za-z][A-Za-z0-9+.-]*://[^\s\x00-\x1f\x7f-\x9f]+$"
THUMBPRINT_PATTERN = r"^$|^[0-9a-fA-F]{64}$"

_ROLE_RE = re.compile(ROLE_PATTERN)

#: (environment id, environment name)
EnvPair = tuple[str, str]


class TargetCreate(Body):
    name: str = name_field()
    environments: list[Ref] = Field(
        min_length=1, max_length=200, description="Environment ids or names (at least one)."
    )
    roles: list[Role] = Field(
        min_length=1, max_length=200, description="Role names (at least one)."
    )
    communication_style: Line = Field(
        "none",
        max_length=40,
        description="none, listening, polling, ssh, or a transport a plugin registered.",
    )
    uri: str = Field("", max_length=500, pattern=URI_PATTERN)
    thumbprint: str = Field(
        "", pattern=THUMBPRINT_PATTERN, description="SHA-256 of the agent's certificate (hex)."
    )
    disabled: bool = False
    transport_settings: dict[str, Any] | None = Field(
        None,
        description="The per-target settings the target's transport declares "
        "(GET /api/v1/transports); secret ones are write-only.",
    )

    @field_validator("environments")
    @classmethod
    def _environment_refs(cls, refs: list[str]) -> list[str]:
        return _check_refs(refs)

    @field_validator("roles")
    @classmethod
    def _role_names(cls, roles: list[str]) -> list[str]:
        return _check_roles(roles)


class TargetUpdate(Body):
    name: str | None = name_field(None)
    environments: list[Ref] | None = Field(None, min_length=1, max_length=200)
    roles: list[Role] | None = Field(None, min_length=1, max_length=200)
    communication_style: Line | None = Field(None, max_length=40)
    uri: str | None = Field(None, max_length=500, pattern=URI_PATTERN)
    thumbprint: str | None = Field(None, pattern=THUMBPRINT_PATTERN)
    disabled: bool | None = None
    transport_settings: dict[str, Any] | None = Field(
        None, description="Replaces the settings; a secret left out keeps its stored value."
    )

    @field_validator("environments")
    @classmethod
    def _environment_refs(cls, refs: list[str] | None) -> list[str] | None:
        return None if refs is None else _check_refs(refs)

    @field_validator("roles")
    @classmethod
    def _role_names(cls, roles: list[str] | None) -> list[str] | None:
        return None if roles is None else _check_roles(roles)


class TargetListQuery(ListQuery):
    environment: Line | None = Field(
        None, max_length=200, description="Only targets in this environment (id or name)."
    )
    role: Line | None = Field(None, max_length=100, description="Only targets with this role.")


class TargetEnvironmentRef(Out):
    id: str
    name: str


class TargetOut(Out):
    id: str
    name: str
    environments: list[TargetEnvironmentRef]
    roles: list[str]
    communication_style: str
    uri: str
    thumbprint: str
    disabled: bool
    health_status: str
    agent_version: str
    update: str = Field(
        description="none, available, in-progress or failed (<reason>): the agent's "
        "self-update to the build this appliance serves."
    )
    last_seen: str | None
    created_at: str
    transport_settings: dict[str, Any] | None = Field(
        None, description="The transport's per-target settings, without secrets."
    )
    transport_secrets: dict[str, str] | None = Field(
        None, description="Each secret setting: set or not set (never its value)."
    )


def _check_refs(refs: list[str]) -> list[str]:
    cleaned = [ref.strip() for ref in refs]
    if any(not ref or len(ref) > 200 for ref in cleaned):
        raise ValueError("each environment is a non-empty id or name of at most 200 characters")
    return list(dict.fromkeys(cleaned))


def _check_roles(roles: list[str]) -> list[str]:
    cleaned = [role.strip() for role in roles]
    if any(not role or len(role) > 100 or not _ROLE_RE.match(role) for role in cleaned):
        raise ValueError("each role is a non-empty name of at most 100 characters, without commas")
    return sorted(set(cleaned))


def _check_style(ctx: RequestContext, style: str) -> None:
    known = set(BUILTIN_STYLES) | {entry.name for entry in ctx.appliance.plugins.transports}
    if style not in known:
        choices = ", ".join(sorted(known))
        raise ValidationFailed(
            f"unknown communication style '{style}'",
            details=[{"field": "communication_style", "message": f"use one of {choices}"}],
            hint="install the transport plugin, or pick a listed style",
        )


def _check_unique(name: str, exclude: str | None = None) -> None:
    query = Target.select().where(Target.name == name)
    if exclude:
        query = query.where(Target.id != exclude)
    if query.exists():
        raise Conflict(f"a target named '{name}' already exists", hint="choose another name")


def _links(target_ids: list[str]) -> tuple[dict[str, list[EnvPair]], dict[str, list[str]]]:
    """Environments and roles of many targets in two queries (no query per target)."""
    envs: dict[str, list[EnvPair]] = {tid: [] for tid in target_ids}
    roles: dict[str, list[str]] = {tid: [] for tid in target_ids}
    if not target_ids:
        return envs, roles
    env_rows = (
        TargetEnvironment.select(TargetEnvironment.target, Environment.id, Environment.name)
        .join(Environment)
        .where(TargetEnvironment.target.in_(target_ids))
        .order_by(Environment.sort_order, Environment.name)
    )
    for target_id, env_id, env_name in tuples(env_rows):
        envs[target_id].append((env_id, env_name))
    role_rows = (
        TargetRole.select(TargetRole.target, TargetRole.role)
        .where(TargetRole.target.in_(target_ids))
        .order_by(TargetRole.role)
    )
    for target_id, role in tuples(role_rows):
        roles[target_id].append(role)
    return envs, roles


def to_json(
    target: Target,
    envs: list[EnvPair],
    roles: list[str],
    update: str = "none",
    transports: TransportRegistry | None = None,
) -> dict[str, Any]:
    settings, secrets = settings_json(transports, target) if transports else (None, None)
    return {
        "id": target.id,
        "name": target.name,
        "environments": [{"id": env_id, "name": name} for env_id, name in envs],
        "roles": roles,
        "communication_style": target.communication_style,
        "uri": target.uri,
        "thumbprint": target.thumbprint,
        "disabled": target.disabled,
        "health_status": target.health_status,
        "agent_version": target.agent_version,
        "update": update,
        "last_seen": iso(target.last_seen),
        "created_at": iso(target.created_at),
        "transport_settings": settings,
        "transport_secrets": secrets,
    }


def update_state(ctx: RequestContext, target: Target) -> str:
    """The target's self-update state (engine/agent_updates.py); none without a network."""
    updates = ctx.appliance.agent_updates
    return updates.status(target.id, target.agent_version) if updates is not None else "none"


def _one(target: Target, ctx: RequestContext | None = None) -> dict[str, Any]:
    envs, roles = _links([target.id])
    update = update_state(ctx, target) if ctx is not None else "none"
    transports = ctx.appliance.plugins.transports if ctx is not None else None
    return to_json(target, envs[target.id], roles[target.id], update, transports)


def _environment_ids(target: Target) -> list[str]:
    rows = TargetEnvironment.select(TargetEnvironment.environment).where(
        TargetEnvironment.target == target.id
    )
    return [env_id for (env_id,) in tuples(rows)]


def _require_all(ctx: RequestContext, permission: Permission, environments: Iterable[str]) -> None:
    for env_id in environments:
        ctx.require(permission, environment=env_id)


def editable_target(ctx: RequestContext, ref: str) -> Target:
    """The target ``ref`` (404), if the caller has ``target.edit`` in all its environments."""
    target = get_or_404(Target, ref, "target")
    _require_all(ctx, Permission.TARGET_EDIT, _environment_ids(target))
    return target


def _require_view(ctx: RequestContext, target: Target) -> None:
    env_ids = _environment_ids(target)
    if not any(ctx.user.can(Permission.TARGET_VIEW, environment=e) for e in env_ids):
        # raises the 403 naming the permission (a target always has an environment)
        ctx.require(Permission.TARGET_VIEW, environment=env_ids[0] if env_ids else None)


def _set_links(target: Target, env_ids: list[str] | None, roles: list[str] | None) -> None:
    if env_ids is not None:
        TargetEnvironment.delete().where(TargetEnvironment.target == target.id).execute()
        TargetEnvironment.insert_many(
            [{"id": new_id("tge"), "target": target.id, "environment": e} for e in env_ids]
        ).execute()
    if roles is not None:
        TargetRole.delete().where(TargetRole.target == target.id).execute()
        TargetRole.insert_many(
            [{"id": new_id("tgr"), "target": target.id, "role": r} for r in roles]
        ).execute()


@router.get("/targets", summary="List targets", query=TargetListQuery, response=Page[TargetOut])
def list_targets(ctx: RequestContext, query: TargetListQuery) -> dict[str, Any]:
    """``?environment=`` takes an id or name (400 if there is none); ``?role=`` matches exactly."""
    ctx.require(Permission.TARGET_VIEW)
    rows = name_filter(Target.select(), Target.name, query.name)
    visible = ctx.user.visible(Permission.TARGET_VIEW, "environments")
    if visible is not None:
        in_visible = TargetEnvironment.select(TargetEnvironment.target).where(
            TargetEnvironment.environment.in_(list(visible))
        )
        rows = rows.where(Target.id.in_(in_visible))
    if query.environment:
        env = find(Environment, query.environment)
        if env is None:
            raise BadRequest(
                f"no environment with id or name '{query.environment}'",
                details=[{"field": "environment", "message": "unknown environment"}],
                hint="list environments with GET /api/v1/environments",
            )
        rows = rows.where(
            Target.id.in_(
                TargetEnvironment.select(TargetEnvironment.target).where(
                    TargetEnvironment.environment == env.id
                )
            )
        )
    if query.role:
        rows = rows.where(
            Target.id.in_(TargetRole.select(TargetRole.target).where(TargetRole.role == query.role))
        )
    total = rows.count()
    page = list(rows.order_by(Target.name).offset(query.skip).limit(query.take))
    envs, roles = _links([t.id for t in page])
    transports = ctx.appliance.plugins.transports
    items = [to_json(t, envs[t.id], roles[t.id], update_state(ctx, t), transports) for t in page]
    return {"items": items, "total": total}


@router.post(
    "/targets",
    summary="Create a target",
    body=TargetCreate,
    response=TargetOut,
    status_code=201,
    errors=(409, 422),
)
def create_target(ctx: RequestContext, body: TargetCreate) -> dict[str, Any]:
    """Needs ``target.edit`` in every environment the target is placed in."""
    ctx.require(Permission.TARGET_EDIT)
    envs = resolve_many(Environment, body.environments, "environment", "environments")
    _require_all(ctx, Permission.TARGET_EDIT, [e.id for e in envs])
    _check_style(ctx, body.communication_style)
    transports = ctx.appliance.plugins.transports
    check_presence(transports, body.communication_style, body.transport_settings, None)
    _check_unique(body.name)
    target = Target(
        id=new_id(Target.id_prefix),
        name=body.name,
        communication_style=body.communication_style,
        uri=body.uri,
        thumbprint=body.thumbprint.lower(),
        disabled=body.disabled,
    )
    details = body.model_dump(exclude={"transport_settings"})
    if body.transport_settings is not None:
        details["transport_settings"] = apply_settings(
            ctx.appliance.vault, transports, target, body.transport_settings, creating=True
        )
    target.save(force_insert=True)
    _set_links(target, [e.id for e in envs], body.roles)
    details["environments"] = [e.name for e in envs]
    ctx.audit("create", "target", target.id, target.name, details)
    ctx.targets_changed()
    return _one(target, ctx)


@router.get("/targets/{ref}", summary="Get a target", response=TargetOut)
def get_target(ctx: RequestContext, ref: str) -> dict[str, Any]:
    target = get_or_404(Target, ref, "target")
    _require_view(ctx, target)
    return _one(target, ctx)


@router.put(
    "/targets/{ref}",
    summary="Update a target (fields left out keep their value; lists are replaced)",
    body=TargetUpdate,
    response=TargetOut,
    errors=(409, 422),
)
def update_target(ctx: RequestContext, ref: str, body: TargetUpdate) -> dict[str, Any]:
    """Needs ``target.edit`` in every environment the target is in, before and after."""
    target = get_or_404(Target, ref, "target")
    _require_all(ctx, Permission.TARGET_EDIT, _environment_ids(target))
    changes = body.model_dump(exclude_unset=True, exclude_none=True, exclude={"transport_settings"})
    env_ids: list[str] | None = None
    if body.environments is not None:
        envs = resolve_many(Environment, body.environments, "environment", "environments")
        env_ids = [e.id for e in envs]
        _require_all(ctx, Permission.TARGET_EDIT, env_ids)
        changes["environments"] = [e.name for e in envs]
    if body.communication_style is not None:
        _check_style(ctx, body.communication_style)
    transports = ctx.appliance.plugins.transports
    style = body.communication_style or target.communication_style
    check_presence(transports, style, body.transport_settings, target)
    changes_style = style != target.communication_style
    if body.name is not None:
        _check_unique(body.name, exclude=target.id)
    for key in ("name", "communication_style", "uri", "disabled"):
        if key in changes:
            setattr(target, key, changes[key])
    if body.thumbprint is not None:
        target.thumbprint = body.thumbprint.lower()
    if body.transport_settings is not None:
        changes["transport_settings"] = apply_settings(
            ctx.appliance.vault,
            transports,
            target,
            body.transport_settings,
            creating=changes_style,
        )
    target.save()
    _set_links(target, env_ids, body.roles)
    ctx.audit("update", "target", target.id, target.name, changes)
    ctx.targets_changed()
    return _one(target, ctx)


def remove_target(target: Target) -> None:
    """Delete a target with its environment and role links."""
    TargetEnvironment.delete().where(TargetEnvironment.target == target.id).execute()
    TargetRole.delete().where(TargetRole.target == target.id).execute()
    target.delete_instance()


@router.delete("/targets/{ref}", summary="Delete a target", response=Deleted)
def delete_target(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Needs ``target.edit`` in every environment the target is in."""
    target = get_or_404(Target, ref, "target")
    _require_all(ctx, Permission.TARGET_EDIT, _environment_ids(target))
    remove_target(target)
    ctx.audit("delete", "target", target.id, target.name)
    ctx.targets_changed()
    return {"id": target.id, "deleted": True}
