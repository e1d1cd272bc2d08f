"""``/api/v1/users``: the people (and service accounts) that sign in or hold API keys.

Managing users needs an unscoped ``user.view``/``user.edit`` (administrators). Every signed-in
user can read ``/users/me`` (who am I, which teams, what may I do) and change their own
password. Passwords are hashed with scrypt and never returned or audited: responses say only
``has_password``. Deactivating a user or setting their password ends their sessions; the
authentication check refuses inactive users, and the principal cache is cleared on every
change, so a deactivated user's API keys stop working at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.auth import SESSION_COOKIE
from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404, require_unique_name
from octo_appliance.api.routing import Router, json_response
from octo_appliance.api.schemas import Body, Deleted, Line, ListQuery, Out, Page, Text
from octo_appliance.api.teams import (
    GrantOut,
    check_security_invariants,
    require_global,
    team_refs_by_user,
)
from octo_appliance.db import LoginSession, Team, TeamMember, TeamRole, User
from octo_appliance.db.base import iso
from octo_appliance.exceptions import Conflict, NotFound, ValidationFailed
from octo_appliance.security.passwords import hash_password, token_hash, verify_password
from octo_appliance.security.permissions import ROLES, Permission

router = Router("users")

USERNAME_PATTERN = r"^[A-Za-z0-9._@-]+$"
#: ``/users/me`` is the caller, so no user may be called that
RESERVED_USERNAMES = frozenset({"me"})
EMAIL_PATTERN = r"^$|^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1000


def _username_field(default: Any = ...) -> Any:
    return Field(
        default,
        min_length=1,
        max_length=100,
        pattern=USERNAME_PATTERN,
        description="Letters, digits and . _ @ -",
    )


def _password_field(description: str) -> Any:
    return Field(
        None,
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description=description,
    )


def _not_reserved(value: str | None) -> str | None:
    if value is not None and value.lower() in RESERVED_USERNAMES:
        raise ValueError(f"'{value}' is reserved; choose another username")
    return value


class UserIn(Body):
    username: str = _username_field()
    display_name: Line = Field("", max_length=200)
    email: str = Field("", max_length=300, pattern=EMAIL_PATTERN)
    password: Text | None = _password_field(
        f"At least {MIN_PASSWORD_LENGTH} characters; leave out for an API-key-only account."
    )
    is_active: bool = True

    @field_validator("username")
    @classmethod
    def _check_username(cls, value: str | None) -> str | None:
        return _not_reserved(value)


class UserUpdate(Body):
    """Fields left out keep their value; a new ``password`` ends the user's sessions."""

    username: str | None = _username_field(None)
    display_name: Line | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=300, pattern=EMAIL_PATTERN)
    password: Text | None = _password_field(f"A new password (at least {MIN_PASSWORD_LENGTH}).")
    is_active: bool | None = None

    @field_validator("username")
    @classmethod
    def _check_username(cls, value: str | None) -> str | None:
        return _not_reserved(value)


class PasswordChange(Body):
    current_password: Text = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: Text = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class TeamRef(Out):
    id: str
    name: str


class UserOut(Out):
    id: str
    username: str
    display_name: str
    email: str
    is_active: bool
    has_password: bool
    created_at: str
    teams: list[TeamRef]


class MyGrant(GrantOut):
    team: TeamRef


class MeOut(UserOut):
    grants: list[MyGrant]
    permissions: list[str] = Field(description="Every permission held, in some scope or all.")
    authenticated_via: str


class PasswordChanged(Out):
    changed: bool
    other_sessions_ended: int


def _users_json(users: list[User]) -> list[dict[str, Any]]:
    teams = team_refs_by_user(u.id for u in users)
    return [
        {
            "id": u.id,
            "username": u.username,
            "display_name": u.display_name,
            "email": u.email,
            "is_active": u.is_active,
            "has_password": bool(u.password_hash),
            "created_at": iso(u.created_at),
            "teams": teams[u.id],
        }
        for u in users
    ]


def _end_sessions(user_id: str, keep_token: str | None = None) -> int:
    query = LoginSession.delete().where(LoginSession.user == user_id)
    if keep_token:
        query = query.where(LoginSession.token_hash != token_hash(keep_token))
    return int(query.execute())


def _public_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """What may go into the audit log: never the password, only that it changed."""
    details = {k: v for k, v in fields.items() if k != "password"}
    if fields.get("password"):
        details["password_changed"] = True
    return details


# Registered before ``/users/{ref}`` so that ``me`` is never taken for a user reference.
@router.get(
    "/users/me", summary="The signed-in user, their teams and what they may do", response=MeOut
)
def get_me(ctx: RequestContext) -> dict[str, Any]:
    user = User.get_or_none(User.id == ctx.user.user_id)
    if user is None:
        raise NotFound("your user no longer exists", hint="sign in again")
    rows: Any = (
        TeamRole.select(TeamRole, Team)
        .join(Team)
        .join(TeamMember, on=(TeamMember.team == Team.id))
        .where(TeamMember.user == user.id)
        .order_by(Team.name, TeamRole.role)
    )
    grants: list[dict[str, Any]] = []
    permissions: set[str] = set()
    for row in rows:
        grants.append(
            {
                "team": {"id": row.team.id, "name": row.team.name},
                "role": row.role,
                "environments": list(row.environments or []),
                "projects": list(row.projects or []),
            }
        )
        permissions |= ROLES.get(row.role, ("", frozenset()))[1]
    result = _users_json([user])[0]
    result["grants"] = grants
    result["permissions"] = sorted(str(p) for p in permissions)
    result["authenticated_via"] = ctx.user.via
    return result


@router.post(
    "/users/me/password",
    summary="Change your own password; your other sessions end",
    body=PasswordChange,
    response=PasswordChanged,
    raw_response=True,
    errors=(409,),
)
def change_my_password(ctx: RequestContext, body: PasswordChange, request: Request) -> Response:
    user = User.get_or_none(User.id == ctx.user.user_id)
    if user is None:
        raise NotFound("your user no longer exists", hint="sign in again")
    if not user.password_hash:
        raise Conflict(
            "your account has no password (it signs in with API keys only)",
            hint="ask an administrator to set a first password",
        )
    if not verify_password(body.current_password, user.password_hash):
        raise ValidationFailed(
            "the current password is not correct",
            details=[{"field": "current_password", "message": "not correct"}],
        )
    user.password_hash = hash_password(body.new_password)
    user.save()
    ended = _end_sessions(user.id, keep_token=request.cookies.get(SESSION_COOKIE))
    ctx.security_changed()
    ctx.audit("change-password", "user", user.id, user.username, {"sessions_ended": ended})
    return json_response({"changed": True, "other_sessions_ended": ended})


@router.get("/users", summary="List users", query=ListQuery, response=Page[UserOut])
def list_users(ctx: RequestContext, query: ListQuery) -> dict[str, Any]:
    """``?name=`` matches the username or the display name."""
    require_global(ctx, Permission.USER_VIEW)
    rows = User.select()
    if query.name:
        rows = rows.where(
            User.username.contains(query.name) | User.display_name.contains(query.name)
        )
    total = rows.count()
    page = list(rows.order_by(User.username).offset(query.skip).limit(query.take))
    return {"items": _users_json(page), "total": total}


@router.create("/users", "Create a user", UserIn, UserOut)
def create_user(ctx: RequestContext, body: UserIn) -> dict[str, Any]:
    """A new user belongs to no team, so holds no permission until a team takes them in."""
    require_global(ctx, Permission.USER_EDIT)
    require_unique_name(User, body.username, "user")
    fields = body.model_dump()
    password = fields.pop("password")
    user = User.create_new(**fields, password_hash=hash_password(password) if password else "")
    ctx.audit("create", "user", user.id, user.username, _public_fields(body.model_dump()))
    return _users_json([user])[0]


@router.get("/users/{ref}", summary="Get a user by id or username", response=UserOut)
def get_user(ctx: RequestContext, ref: str) -> dict[str, Any]:
    require_global(ctx, Permission.USER_VIEW)
    return _users_json([get_or_404(User, ref, "user")])[0]


@router.update(
    "/users/{ref}", "Update a user (fields left out keep their value)", UserUpdate, UserOut
)
def update_user(ctx: RequestContext, ref: str, body: UserUpdate) -> dict[str, Any]:
    """Deactivating a user or setting a password ends their sessions."""
    require_global(ctx, Permission.USER_EDIT)
    user = get_or_404(User, ref, "user")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if changes.get("is_active") is False and user.id == ctx.user.user_id:
        raise Conflict("you cannot deactivate yourself", hint="ask another administrator")
    if "username" in changes:
        require_unique_name(User, changes["username"], "user", exclude=user.id)
    for key, value in changes.items():
        if key == "password":
            user.password_hash = hash_password(value)
        else:
            setattr(user, key, value)
    user.save()
    if changes.get("password") or changes.get("is_active") is False:
        _end_sessions(user.id)
    check_security_invariants()
    ctx.security_changed()
    ctx.audit("update", "user", user.id, user.username, _public_fields(changes))
    return _users_json([user])[0]


@router.delete("/users/{ref}", summary="Delete a user", response=Deleted, errors=(409,))
def delete_user(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Their API keys, sessions and team memberships go with them; the audit log stays."""
    require_global(ctx, Permission.USER_EDIT)
    user = get_or_404(User, ref, "user")
    if user.id == ctx.user.user_id:
        raise Conflict("you cannot delete yourself", hint="ask another administrator")
    user.delete_instance()
    check_security_invariants()
    ctx.security_changed()
    ctx.audit("delete", "user", user.id, user.username)
    return {"id": user.id, "deleted": True}
