"""``/api/v1/teams`` and ``/api/v1/roles``: who may do what.

Permissions reach people only through teams: a team has members and role grants, each grant
optionally limited to some environments and projects. Teams are global, so reading them needs
an unscoped ``team.view`` and changing them an unscoped ``team.edit`` (a project-limited
administrator must not be able to grant themselves more). Every change clears the principal
cache, so a removed member loses access at once on this node.

Two rules keep the appliance manageable: the built-in Administrators team keeps its name, at
least one member and an unscoped administrator grant; and after any change at least one active
user is still an unscoped administrator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import Field, JsonValue, field_validator

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404, name_filter, require_unique_name, resolve_many
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import (
    Body,
    Deleted,
    Line,
    ListQuery,
    Out,
    Page,
    Ref,
    Text,
    name_field,
)
from octo_appliance.db import Environment, Project, Team, TeamMember, TeamRole, User
from octo_appliance.db.base import iso
from octo_appliance.exceptions import Conflict, Forbidden
from octo_appliance.security.permissions import ADMINISTRATORS_TEAM, ROLES, Permission

router = Router("teams")


def _role_enum(schema: dict[str, JsonValue]) -> None:
    roles: list[JsonValue] = [*sorted(ROLES)]
    schema["enum"] = roles


class GrantIn(Body):
    role: Line = Field(
        description="viewer, project-deployer, worker-user or administrator (see GET /roles)",
        json_schema_extra=_role_enum,
    )
    environments: list[Ref] = Field(
        default_factory=list, max_length=1000, description="Environment ids or names; [] = all."
    )
    projects: list[Ref] = Field(
        default_factory=list, max_length=1000, description="Project ids or names; [] = all."
    )

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"unknown role '{value}'; choose one of {', '.join(sorted(ROLES))}")
        return value


class TeamIn(Body):
    name: str = name_field()
    description: Text = Field("", max_length=10_000)
    members: list[Ref] = Field(
        default_factory=list, max_length=10_000, description="User ids or usernames."
    )
    roles: list[GrantIn] = Field(default_factory=list, max_length=100)


class TeamUpdate(Body):
    """Fields left out keep their value; ``members`` and ``roles`` replace the whole list."""

    name: str | None = name_field(None)
    description: Text | None = Field(None, max_length=10_000)
    members: list[Ref] | None = Field(None, max_length=10_000)
    roles: list[GrantIn] | None = Field(None, max_length=100)


class MemberOut(Out):
    id: str
    username: str
    display_name: str
    is_active: bool


class GrantOut(Out):
    role: str
    environments: list[str]
    projects: list[str]


class TeamOut(Out):
    id: str
    name: str
    description: str
    builtin: bool
    created_at: str
    members: list[MemberOut]
    roles: list[GrantOut]


class RoleOut(Out):
    name: str
    title: str
    permissions: list[str]


class RoleList(Out):
    items: list[RoleOut]
    total: int


# ---------------------------------------------------------------- rules shared with users.py


def require_global(ctx: RequestContext, permission: Permission) -> None:
    """Users, teams, keys and the audit log span everything: only an unlimited grant counts."""
    if not ctx.user.can_unscoped(permission):
        raise Forbidden(
            f"you lack the permission '{permission}' (it needs a role granted without "
            "environment or project limits)",
            hint="ask an administrator to grant your team a role that includes it",
        )


def active_administrator_ids() -> set[str]:
    """Active users holding an administrator grant limited to nothing."""
    rows: Any = (
        TeamRole.select(TeamRole.environments, TeamRole.projects, User.id)
        .join(TeamMember, on=(TeamMember.team == TeamRole.team))
        .join(User, on=(User.id == TeamMember.user))
        .where(TeamRole.role == "administrator", User.is_active == True)  # noqa: E712
        .tuples()
    )
    return {user_id for envs, projects, user_id in rows if not envs and not projects}


def check_security_invariants() -> None:
    """Run after a change, inside its transaction: raising rolls the change back (409)."""
    team = Team.get_or_none(Team.name == ADMINISTRATORS_TEAM)
    if team is not None:
        if not TeamMember.select().where(TeamMember.team == team.id).exists():
            raise Conflict(
                f"the built-in team '{ADMINISTRATORS_TEAM}' cannot lose its last member",
                hint="add another administrator to it first",
            )
        grants = TeamRole.select().where(TeamRole.team == team.id)
        if not any(
            g.role == "administrator" and not g.environments and not g.projects for g in grants
        ):
            raise Conflict(
                f"the built-in team '{ADMINISTRATORS_TEAM}' must keep an unlimited "
                "administrator role",
                hint="leave its administrator role in place; create another team for other roles",
            )
    if not active_administrator_ids():
        raise Conflict(
            "the change would leave no active administrator",
            hint="make another active user an administrator first",
        )


def team_refs_by_user(user_ids: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    """user id -> [{"id", "name"}] of their teams, in one query (for user listings)."""
    ids = list(user_ids)
    result: dict[str, list[dict[str, str]]] = {uid: [] for uid in ids}
    if not ids:
        return result
    rows: Any = (
        TeamMember.select(TeamMember.user, Team.id, Team.name)
        .join(Team)
        .where(TeamMember.user.in_(ids))
        .order_by(Team.name)
        .tuples()
    )
    for user_id, team_id, team_name in rows:
        result[user_id].append({"id": team_id, "name": team_name})
    return result


# ---------------------------------------------------------------- serialisation


def _grant_json(grant: TeamRole) -> dict[str, Any]:
    return {
        "role": grant.role,
        "environments": list(grant.environments or []),
        "projects": list(grant.projects or []),
    }


def _teams_json(teams: list[Team]) -> list[dict[str, Any]]:
    """Several teams with their members and grants, in two queries whatever their number."""
    ids = [t.id for t in teams]
    members: dict[str, list[dict[str, Any]]] = {tid: [] for tid in ids}
    grants: dict[str, list[dict[str, Any]]] = {tid: [] for tid in ids}
    if ids:
        links: Any = (
            TeamMember.select(TeamMember.team, User)
            .join(User)
            .where(TeamMember.team.in_(ids))
            .order_by(User.username)
        )
        for link in links:
            user = link.user
            members[link.team_id].append(
                {
                    "id": user.id,
                    "username": user.username,
                    "display_name": user.display_name,
                    "is_active": user.is_active,
                }
            )
        roles: Any = TeamRole.select().where(TeamRole.team.in_(ids)).order_by(TeamRole.role)
        for grant in roles:
            grants[grant.team_id].append(_grant_json(grant))
    return [
        {
            "id": t.id,
            "name": t.name,
            "description": t.description,
            "builtin": t.name == ADMINISTRATORS_TEAM,
            "created_at": iso(t.created_at),
            "members": members[t.id],
            "roles": grants[t.id],
        }
        for t in teams
    ]


# ---------------------------------------------------------------- input resolution


def _resolve_members(refs: list[str]) -> list[User]:
    return resolve_many(User, refs, "user", "members")


def _resolve_grants(grants: list[GrantIn]) -> list[dict[str, Any]]:
    """Grant bodies with environment/project references turned into ids (422 if unknown)."""
    resolved = []
    for index, grant in enumerate(grants):
        envs = resolve_many(
            Environment, grant.environments, "environment", f"roles.{index}.environments"
        )
        projects = resolve_many(Project, grant.projects, "project", f"roles.{index}.projects")
        resolved.append(
            {
                "role": grant.role,
                "environments": [e.id for e in envs],
                "projects": [p.id for p in projects],
            }
        )
    return resolved


def _replace_members(team: Team, users: list[User]) -> None:
    TeamMember.delete().where(TeamMember.team == team.id).execute()
    for user in users:
        TeamMember.create_new(team=team, user=user)


def _replace_grants(team: Team, grants: list[dict[str, Any]]) -> None:
    TeamRole.delete().where(TeamRole.team == team.id).execute()
    for grant in grants:
        TeamRole.create_new(team=team, **grant)


# ---------------------------------------------------------------- endpoints


@router.get("/roles", summary="Built-in roles and the permissions they grant", response=RoleList)
def list_roles(ctx: RequestContext) -> dict[str, Any]:
    """Open to every signed-in user: a person should be able to see what a role means."""
    items = [
        {"name": name, "title": title, "permissions": sorted(str(p) for p in permissions)}
        for name, (title, permissions) in ROLES.items()
    ]
    return {"items": items, "total": len(items)}


@router.get("/teams", summary="List teams", query=ListQuery, response=Page[TeamOut])
def list_teams(ctx: RequestContext, query: ListQuery) -> dict[str, Any]:
    require_global(ctx, Permission.TEAM_VIEW)
    rows = name_filter(Team.select(), Team.name, query.name)
    total = rows.count()
    page = list(rows.order_by(Team.name).offset(query.skip).limit(query.take))
    return {"items": _teams_json(page), "total": total}


@router.create("/teams", "Create a team", TeamIn, TeamOut)
def create_team(ctx: RequestContext, body: TeamIn) -> dict[str, Any]:
    require_global(ctx, Permission.TEAM_EDIT)
    require_unique_name(Team, body.name, "team")
    users = _resolve_members(body.members)
    grants = _resolve_grants(body.roles)
    team = Team.create_new(name=body.name, description=body.description)
    _replace_members(team, users)
    _replace_grants(team, grants)
    ctx.security_changed()
    details = {
        "name": team.name,
        "description": team.description,
        "members": [u.id for u in users],
        "roles": grants,
    }
    ctx.audit("create", "team", team.id, team.name, details)
    return _teams_json([team])[0]


@router.get("/teams/{ref}", summary="Get a team with its members and roles", response=TeamOut)
def get_team(ctx: RequestContext, ref: str) -> dict[str, Any]:
    require_global(ctx, Permission.TEAM_VIEW)
    return _teams_json([get_or_404(Team, ref, "team")])[0]


@router.update(
    "/teams/{ref}",
    "Update a team (members and roles, when given, replace the whole list)",
    TeamUpdate,
    TeamOut,
)
def update_team(ctx: RequestContext, ref: str, body: TeamUpdate) -> dict[str, Any]:
    require_global(ctx, Permission.TEAM_EDIT)
    team = get_or_404(Team, ref, "team")
    changes: dict[str, Any] = {}
    if body.name is not None and body.name != team.name:
        if team.name == ADMINISTRATORS_TEAM:
            raise Conflict(
                f"the built-in team '{ADMINISTRATORS_TEAM}' cannot be renamed",
                hint="create a new team if you need another name",
            )
        require_unique_name(Team, body.name, "team", exclude=team.id)
        team.name = changes["name"] = body.name
    if body.description is not None:
        team.description = changes["description"] = body.description
    users = _resolve_members(body.members) if body.members is not None else None
    grants = _resolve_grants(body.roles) if body.roles is not None else None
    team.save()
    if users is not None:
        _replace_members(team, users)
        changes["members"] = [u.id for u in users]
    if grants is not None:
        _replace_grants(team, grants)
        changes["roles"] = grants
    check_security_invariants()
    ctx.security_changed()
    ctx.audit("update", "team", team.id, team.name, changes)
    return _teams_json([team])[0]


@router.delete("/teams/{ref}", summary="Delete a team", response=Deleted, errors=(409,))
def delete_team(ctx: RequestContext, ref: str) -> dict[str, Any]:
    require_global(ctx, Permission.TEAM_EDIT)
    team = get_or_404(Team, ref, "team")
    if team.name == ADMINISTRATORS_TEAM:
        raise Conflict(
            f"the built-in team '{ADMINISTRATORS_TEAM}' cannot be deleted",
            hint="remove members you no longer want from it instead",
        )
    team.delete_instance()
    check_security_invariants()
    ctx.security_changed()
    ctx.audit("delete", "team", team.id, team.name)
    return {"id": team.id, "deleted": True}
