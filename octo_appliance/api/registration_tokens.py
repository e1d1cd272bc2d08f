"""``/api/v1/registration-tokens``: tokens that may only register targets.

The one-line install (``octo-appliance agent install-command``) carries a registration token,
never an administrator's API key: the token registers targets in the environments, with the
roles and in the communication style it names, until it expires or is used up, and every other
endpoint answers 401 to it. Creating one needs ``target.edit`` in each of its environments (what
registering there directly would need). Like API keys, the token is shown once, only its
SHA-256 is stored, revoking deletes it, and the audit log records each change without the
token or its prefix.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import resolve_many
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Body, Deleted, Line, ListQuery, Out, Ref, Role
from octo_appliance.db import Environment, RegistrationToken, User
from octo_appliance.db.base import fk_id, iso, tuples
from octo_appliance.db.registration_tokens import create_registration_token
from octo_appliance.exceptions import NotFound
from octo_appliance.security.permissions import Permission

router = Router("registration-tokens")

#: a token lives at most this long: it is meant for an install happening now
MAX_EXPIRES_IN = 30 * 24 * 3600
Mode = Literal["any", "listening", "polling"]


class TokenIn(Body):
    name: Line = Field("", max_length=200, description="A label for people; not unique.")
    environments: list[Ref] = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1, max_length=200)
    expires_in: int = Field(3600, ge=60, le=MAX_EXPIRES_IN, description="Seconds from now.")
    max_uses: int = Field(1, ge=1, le=100_000, description="Registrations it may make.")
    mode: Mode = Field("any", description="The communication style targets must use.")


class NamedRef(Out):
    id: str
    name: str


class TokenOut(Out):
    id: str
    name: str
    prefix: str
    environments: list[NamedRef]
    roles: list[str]
    mode: str
    max_uses: int
    uses: int
    created_at: str
    expires_at: str
    last_used: str | None
    created_by: NamedRef


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself: shown this once.")


def _to_json(row: RegistrationToken, user: User) -> dict[str, Any]:
    rows = Environment.select(Environment.id, Environment.name)
    names: dict[str, str] = dict(tuples(rows.where(Environment.id.in_(row.environments))))
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "environments": [{"id": e, "name": names.get(e, e)} for e in row.environments],
        "roles": list(row.roles),
        "mode": row.mode,
        "max_uses": row.max_uses,
        "uses": row.uses,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "last_used": iso(row.last_used),
        "created_by": {"id": user.id, "name": user.username},
    }


def _sees_all(ctx: RequestContext) -> bool:
    return ctx.user.can_unscoped(Permission.USER_VIEW)


@router.listing(
    "/registration-tokens",
    "List registration tokens (yours; every one for administrators)",
    TokenOut,
)
def list_tokens(ctx: RequestContext, query: ListQuery) -> dict[str, Any]:
    """Expired and used-up tokens are listed too, until revoked; the tokens are never shown."""
    rows = RegistrationToken.select(RegistrationToken, User).join(User)
    if not _sees_all(ctx):
        rows = rows.where(RegistrationToken.user == ctx.user.user_id)
    if query.name:
        rows = rows.where(RegistrationToken.name.contains(query.name))
    total = rows.count()
    page = rows.order_by(RegistrationToken.created_at.desc(), RegistrationToken.id)
    page = page.offset(query.skip).limit(query.take)
    return {"items": [_to_json(row, row.user) for row in page], "total": total}


@router.post(
    "/registration-tokens",
    summary="Create a registration token; the response holds the token, shown once",
    body=TokenIn,
    response=TokenCreated,
    status_code=201,
    errors=(422,),
)
def create_token(ctx: RequestContext, body: TokenIn) -> dict[str, Any]:
    """Needs ``target.edit`` in every environment named."""
    return issue_token(ctx, body)


def issue_token(ctx: RequestContext, body: TokenIn) -> dict[str, Any]:
    """Create and audit a token (here and for the install command); the token is in the
    answer, once."""
    ctx.require(Permission.TARGET_EDIT)
    envs = resolve_many(Environment, body.environments, "environment", "environments")
    for env in envs:
        ctx.require(Permission.TARGET_EDIT, environment=env.id)
    user = User.get_by_id(ctx.user.user_id)
    row, token = create_registration_token(
        user,
        name=body.name,
        environments=[e.id for e in envs],
        roles=sorted(set(body.roles)),
        mode=body.mode,
        max_uses=body.max_uses,
        expires_in=datetime.timedelta(seconds=body.expires_in),
    )
    ctx.audit(
        "create",
        "registration-token",
        row.id,
        row.name,
        {
            "environments": [e.name for e in envs],
            "roles": row.roles,
            "mode": row.mode,
            "max_uses": row.max_uses,
            "expires_at": iso(row.expires_at),
        },
    )
    return {**_to_json(row, user), "token": token}


@router.delete(
    "/registration-tokens/{token_id}",
    summary="Revoke a registration token (yours, or anyone's for administrators)",
    response=Deleted,
)
def delete_token(ctx: RequestContext, token_id: str) -> dict[str, Any]:
    """Targets it registered stay; only further registrations are refused."""
    ctx.require(Permission.TARGET_EDIT)
    row = RegistrationToken.get_or_none(RegistrationToken.id == token_id)
    if row is None or (fk_id(row, "user") != ctx.user.user_id and not _sees_all(ctx)):
        raise NotFound(
            f"no registration token with id '{token_id}' among yours",
            hint="GET /api/v1/registration-tokens",
        )
    row.delete_instance()
    ctx.audit("delete", "registration-token", row.id, row.name)
    return {"id": row.id, "deleted": True}
