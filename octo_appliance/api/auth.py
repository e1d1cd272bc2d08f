"""Who is asking: an ``X-Api-Key`` header, or a session cookie plus CSRF token for writes.

Resolved principals are cached for a few seconds by credential hash, and the cache is dropped
whenever users, teams, grants or keys change, so a busy API key does not cost a query per
request while a revoked one stops working at once on this node.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request

from octo_appliance.appliance_client.api_key_input import is_registration_token
from octo_appliance.db import ApiKey, LoginSession, TeamMember, TeamRole, User, utcnow
from octo_appliance.db.registration_tokens import find_token
from octo_appliance.exceptions import Forbidden, Unauthenticated
from octo_appliance.security.passwords import token_hash
from octo_appliance.security.permissions import Principal, PrincipalCache, grants_from_rows

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance

API_KEY_HEADER = "x-api-key"
SESSION_COOKIE = "octo_session"
CSRF_COOKIE = "octo_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def load_principal(user: User, via: str) -> Principal:
    rows = (
        TeamRole.select(TeamRole.role, TeamRole.environments, TeamRole.projects)
        .join(TeamMember, on=(TeamMember.team == TeamRole.team))
        .where(TeamMember.user == user.id)
        .tuples()
    )
    return Principal(user.id, user.username, grants_from_rows(list(rows)), via)


def _unauthenticated() -> Unauthenticated:
    return Unauthenticated(
        "this endpoint needs authentication",
        hint="send an X-Api-Key header, or sign in with POST /api/v1/auth/login",
    )


def credential_key(request: Request) -> str | None:
    """The principal-cache key of the request's credential (None: it carries none)."""
    api_key = request.headers.get(API_KEY_HEADER)
    if api_key:
        return "k:" + token_hash(api_key)
    session_token = request.cookies.get(SESSION_COOKIE)
    return "s:" + token_hash(session_token) if session_token else None


def cached_principal(appliance: Appliance, credential: str) -> Principal | None:
    """The principal of a credential seen in the last few seconds, without the database (only
    for safe methods: a cookie-authenticated write still needs its CSRF check)."""
    hit = appliance.principal_cache.get(credential)
    return None if hit is None else hit[0]


def registration_principal(token: str, *, accepted: bool) -> Principal:
    """The grant-less principal of a registration token, only where the endpoint takes one."""
    if not accepted:
        raise Unauthenticated(
            "a registration token can only register targets",
            hint="use an API key for this endpoint",
        )
    row = find_token(token)
    if row is None or not row.user.is_active:
        raise Unauthenticated(
            "the registration token is not valid (expired, revoked or unknown)",
            hint="ask for a new install command: octo-appliance agent install-command",
        )
    return Principal(
        row.user.id,
        f"{row.user.username} (registration token {row.prefix})",
        (),
        "registration-token",
        registration_token=row.id,
    )


def authenticate(
    appliance: Appliance,
    request: Request,
    csrf_token: str | None = None,
    *,
    registration_token: bool = False,
) -> Principal:
    """Return the principal or raise 401 (no/bad credentials) or 403 (CSRF).

    ``csrf_token`` is the token a form sent in a field (the portal's forms); None reads the
    ``X-CSRF-Token`` header (the API's callers). ``registration_token``: the endpoint also
    takes a registration token in ``X-Api-Key``; every other endpoint answers 401 to one."""
    cache: PrincipalCache = appliance.principal_cache
    api_key = request.headers.get(API_KEY_HEADER)
    if api_key and is_registration_token(api_key):
        return registration_principal(api_key, accepted=registration_token)
    if api_key:
        digest = "k:" + token_hash(api_key)
        hit = cache.get(digest)
        if hit is not None:
            return hit[0]
        key = ApiKey.select(ApiKey, User).join(User).where(ApiKey.key_hash == digest[2:]).first()
        if key is None or not key.user.is_active:
            raise Unauthenticated(
                "the API key is not valid",
                hint="create a new key with 'octo-appliance api-key "
                "create' or POST /api/v1/api-keys",
            )
        ApiKey.update(last_used=utcnow()).where(ApiKey.id == key.id).execute()
        principal = load_principal(key.user, "api-key")
        cache.put(digest, principal)
        return principal
    session_token = request.cookies.get(SESSION_COOKIE)
    if not session_token:
        raise _unauthenticated()
    digest = "s:" + token_hash(session_token)
    hit = cache.get(digest)
    if hit is not None:
        principal, csrf_hash = hit
    else:
        session = (
            LoginSession.select(LoginSession, User)
            .join(User)
            .where(LoginSession.token_hash == digest[2:], LoginSession.expires_at > utcnow())
            .first()
        )
        if session is None or not session.user.is_active:
            raise Unauthenticated("the session has expired or was signed out", hint="sign in again")
        principal = load_principal(session.user, "session")
        csrf_hash = session.csrf_hash
        cache.put(digest, principal, csrf_hash)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "") if csrf_token is None else csrf_token
        if not sent or not hmac.compare_digest(token_hash(sent), csrf_hash):
            raise Forbidden(
                "a cookie-authenticated write needs the CSRF token",
                hint=f"send the csrf_token from the login response in the {CSRF_HEADER} header",
            )
    return principal
