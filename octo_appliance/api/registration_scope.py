"""What a registration token lets its holder do, checked inside the endpoints that take one.

Authentication (``api/auth.py``) only establishes that the token exists and has not expired;
here the request is held to the token's environments, roles and communication style, and a
registration uses it once (refused when used up). A token may also read the health of, and
deregister, a target it could have registered, named with its certificate's thumbprint.
"""

from __future__ import annotations

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404
from octo_appliance.db import RegistrationToken, Target, TargetEnvironment, TargetRole
from octo_appliance.db.base import tuples
from octo_appliance.db.registration_tokens import use_once
from octo_appliance.exceptions import Forbidden, NotFound, Unauthenticated, ValidationFailed
from octo_appliance.security.permissions import Permission

NEW_COMMAND = "ask for a new install command (octo-appliance agent install-command)"


def _token(token_id: str) -> RegistrationToken:
    row: RegistrationToken | None = RegistrationToken.get_or_none(RegistrationToken.id == token_id)
    if row is None:
        raise Unauthenticated("the registration token was revoked", hint=NEW_COMMAND)
    return row


def require_scope(environments: list[str], roles: list[str]) -> None:
    """An API key's registration names its environments and roles (a token's has defaults)."""
    missing = [
        {"field": name, "message": "name at least one"}
        for name, given in (("environments", environments), ("roles", roles))
        if not given
    ]
    if missing:
        raise ValidationFailed("a registration needs environments and roles", details=missing)


def token_defaults(
    token_id: str, environments: list[str], roles: list[str]
) -> tuple[list[str], list[str]]:
    """What a token's registration left out: every environment and role of the token."""
    row = _token(token_id)
    return environments or list(row.environments), roles or list(row.roles)


def check_token_covers(
    token_id: str, environment_ids: list[str], roles: list[str], mode: str
) -> None:
    """403 naming what the token does not allow: environments, roles, style; 401 used up."""
    row = _token(token_id)
    if row.uses >= row.max_uses:
        raise Unauthenticated(
            f"the registration token was used up ({row.uses} of {row.max_uses} registrations)",
            hint=NEW_COMMAND,
        )
    outside = [e for e in environment_ids if e not in row.environments]
    if outside:
        raise Forbidden(
            "the registration token does not cover the environment(s) asked for",
            hint="register in the environments the install command was made for",
        )
    other_roles = sorted(set(roles) - set(row.roles))
    if other_roles:
        raise Forbidden(
            f"the registration token does not allow the role(s) {', '.join(other_roles)}",
            hint=f"it allows: {', '.join(row.roles)}",
        )
    if row.mode != "any" and row.mode != mode:
        raise Forbidden(
            f"the registration token is for {row.mode} agents, not {mode} ones",
            hint="use the install command as printed (--poll or --listen)",
        )


def use_token(token_id: str) -> None:
    if not use_once(token_id):
        raise Unauthenticated("the registration token was used up", hint=NEW_COMMAND)


def require_registration(
    ctx: RequestContext, ref: str, thumbprint: str, permission: Permission
) -> Target:
    """The target named by ``ref`` whose thumbprint is ``thumbprint``, if the caller holds
    ``permission`` in its environments or a token that could have registered it (404 else,
    so a token learns nothing of other targets)."""
    target: Target = get_or_404(Target, ref, "target")
    env_ids = [
        e
        for (e,) in tuples(
            TargetEnvironment.select(TargetEnvironment.environment).where(
                TargetEnvironment.target == target.id
            )
        )
    ]
    token_id = ctx.user.registration_token
    if token_id is None:
        for env_id in env_ids:
            ctx.require(permission, environment=env_id)
        allowed = True
    else:
        row = _token(token_id)
        roles = [
            r
            for (r,) in tuples(
                TargetRole.select(TargetRole.role).where(TargetRole.target == target.id)
            )
        ]
        allowed = set(env_ids) <= set(row.environments) and set(roles) <= set(row.roles)
    if not allowed or target.thumbprint.lower() != thumbprint.lower():
        raise NotFound(f"no target '{ref}' with that thumbprint", hint="check the agent's home")
    return target
