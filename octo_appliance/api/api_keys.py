"""``/api/v1/api-keys``: keys for scripts, CI and agents' registration.

Every signed-in user manages their own keys (self-service, like changing a password); an
administrator (unscoped ``user.view``/``user.edit``) may list, create and revoke anyone's.
A key is shown once, in the create response; only its SHA-256 is stored, and neither the key
nor its prefix goes into the audit log. Revoking clears the principal cache, so a revoked key
stops working at once on this node.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Body, Deleted, Line, ListQuery, Out, name_field
from octo_appliance.db import ApiKey, User
from octo_appliance.db.api_keys import create_api_key
from octo_appliance.db.base import iso
from octo_appliance.exceptions import Conflict, Forbidden, NotFound
from octo_appliance.security.permissions import Permission

router = Router("api-keys")


class ApiKeyQuery(ListQuery):
    user: Line | None = Field(
        None,
        max_length=100,
        description="Whose keys (id or username); default: yours. Others' need user.view.",
    )


class ApiKeyIn(Body):
    name: str = name_field()
    user: Line | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Id or username of the owner; default: you. Others' need user.edit.",
    )


class KeyOwner(Out):
    id: str
    username: str


class ApiKeyOut(Out):
    id: str
    name: str
    prefix: str
    created_at: str
    last_used: str | None
    user: KeyOwner


class ApiKeyCreated(Out):
    id: str
    name: str
    prefix: str
    key: str = Field(description="The key itself: shown this once, store it now.")
    created_at: str
    user: KeyOwner


def _to_json(key: ApiKey, user: User) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "last_used": iso(key.last_used),
        "user": {"id": user.id, "username": user.username},
    }


def _is_self(ctx: RequestContext, ref: str) -> bool:
    return ref in (ctx.user.user_id, ctx.user.username)


def _owner(ctx: RequestContext, ref: str | None, permission: Permission) -> User:
    """The user whose keys are meant: the caller, or (with ``permission``) anyone."""
    if ref is None or _is_self(ctx, ref):
        user = User.get_or_none(User.id == ctx.user.user_id)
        if user is None:
            raise NotFound("your user no longer exists", hint="sign in again")
        return user
    if not ctx.user.can_unscoped(permission):
        raise Forbidden(
            "you may only manage your own API keys",
            hint=f"leave out 'user'; managing other users' keys needs '{permission}'",
        )
    user = User.get_or_none((User.id == ref) | (User.username == ref))
    if user is None:
        raise NotFound(f"no user with id or username '{ref}'")
    return user


@router.listing("/api-keys", "List API keys (yours by default)", ApiKeyOut, query=ApiKeyQuery)
def list_api_keys(ctx: RequestContext, query: ApiKeyQuery) -> dict[str, Any]:
    """``?name=`` filters by label; the keys themselves are never shown again."""
    user = _owner(ctx, query.user, Permission.USER_VIEW)
    rows = ApiKey.select().where(ApiKey.user == user.id)
    if query.name:
        rows = rows.where(ApiKey.name.contains(query.name))
    total = rows.count()
    page = rows.order_by(ApiKey.created_at.desc(), ApiKey.id).offset(query.skip).limit(query.take)
    return {"items": [_to_json(key, user) for key in page], "total": total}


@router.post(
    "/api-keys",
    summary="Create an API key; the response holds the key, shown once",
    body=ApiKeyIn,
    response=ApiKeyCreated,
    status_code=201,
    errors=(404, 409),
)
def create_key(ctx: RequestContext, body: ApiKeyIn) -> dict[str, Any]:
    user = _owner(ctx, body.user, Permission.USER_EDIT)
    if not user.is_active:
        raise Conflict(
            f"user '{user.username}' is deactivated, so a key for them would not work",
            hint="activate the user first (PUT /api/v1/users/{id} with is_active true)",
        )
    row, key = create_api_key(user, body.name)
    ctx.security_changed()
    ctx.audit("create", "api-key", row.id, row.name, {"user": user.id, "username": user.username})
    listed = _to_json(row, user)
    del listed["last_used"]
    return {**listed, "key": key}


@router.delete(
    "/api-keys/{key_id}",
    summary="Revoke an API key (yours, or anyone's for admins)",
    response=Deleted,
)
def delete_key(ctx: RequestContext, key_id: str) -> dict[str, Any]:
    """Keys are addressed by id only: names are labels and need not be unique."""
    row = ApiKey.select(ApiKey, User).join(User).where(ApiKey.id == key_id).first()
    # Another user's key is "not found" for a non-administrator: ids are not confirmed to exist.
    if row is None or (
        row.user.id != ctx.user.user_id and not ctx.user.can_unscoped(Permission.USER_EDIT)
    ):
        raise NotFound(f"no API key with id '{key_id}' among yours", hint="GET /api/v1/api-keys")
    row.delete_instance()
    ctx.security_changed()
    ctx.audit(
        "delete", "api-key", row.id, row.name, {"user": row.user.id, "username": row.user.username}
    )
    return {"id": row.id, "deleted": True}
