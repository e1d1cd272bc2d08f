"""Registration tokens: created (returned once, only the hash kept), found and used up.

A token may register targets within its environments, roles and communication style until it
expires or has been used ``max_uses`` times; it may also read the health of, and deregister,
a target it could have registered. Nothing else accepts it.
"""

from __future__ import annotations

import datetime

from octo_appliance.db.base import utcnow
from octo_appliance.db.security import RegistrationToken, User
from octo_appliance.security.passwords import generate_registration_token, token_hash


def create_registration_token(
    user: User,
    *,
    name: str,
    environments: list[str],
    roles: list[str],
    mode: str,
    max_uses: int,
    expires_in: datetime.timedelta,
) -> tuple[RegistrationToken, str]:
    token = generate_registration_token()
    row: RegistrationToken = RegistrationToken.create_new(
        user=user,
        name=name,
        token_hash=token_hash(token),
        prefix=token[:12],
        environments=environments,
        roles=roles,
        mode=mode,
        max_uses=max_uses,
        uses=0,
        expires_at=utcnow() + expires_in,
    )
    return row, token


def find_token(token: str) -> RegistrationToken | None:
    """The token's row with its creator, if it exists and has not expired."""
    row: RegistrationToken | None = (
        RegistrationToken.select(RegistrationToken, User)
        .join(User)
        .where(RegistrationToken.token_hash == token_hash(token))
        .first()
    )
    if row is None or row.expires_at <= utcnow():
        return None
    return row


def use_once(token_id: str) -> bool:
    """Count one registration; False when the token was used up (atomic, so two installs
    racing for the last use cannot both get it)."""
    changed = (
        RegistrationToken.update(uses=RegistrationToken.uses + 1, last_used=utcnow())
        .where(
            (RegistrationToken.id == token_id)
            & (RegistrationToken.uses < RegistrationToken.max_uses)
            & (RegistrationToken.expires_at > utcnow())
        )
        .execute()
    )
    return bool(changed)
