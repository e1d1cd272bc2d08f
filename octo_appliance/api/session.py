"""``/api/v1/auth``: cookie sessions for people (scripts use ``X-Api-Key``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.auth import CSRF_COOKIE, SESSION_COOKIE, authenticate
from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router, json_response
from octo_appliance.api.schemas import LINE_PATTERN, TEXT_PATTERN, Body, Out
from octo_appliance.db import LoginSession, User, utcnow
from octo_appliance.exceptions import TooManyRequests, Unauthenticated
from octo_appliance.security.passwords import generate_token, token_hash, verify_password
from octo_appliance.security.permissions import Principal

router = Router("auth")

# A real hash of a random password, verified when the user does not exist, so a failed login
# takes as long for an unknown user as for a wrong password (no user enumeration by timing).
_DUMMY_HASH: str | None = None


class LoginIn(Body):
    username: str = Field(min_length=1, max_length=100, pattern=LINE_PATTERN)
    password: str = Field(min_length=1, max_length=1000, pattern=TEXT_PATTERN)


class LoginOut(Out):
    user_id: str
    username: str
    csrf_token: str
    expires_at: str


class LoggedOut(Out):
    signed_out: bool


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        from octo_appliance.security.passwords import hash_password

        _DUMMY_HASH = hash_password(generate_token())
    return _DUMMY_HASH


@router.post(
    "/auth/login",
    summary="Sign in with username and password; sets the session cookie",
    auth=False,
    body=LoginIn,
    response=LoginOut,
    errors=(401, 429),
    raw_response=True,
)
def login(ctx: RequestContext, body: LoginIn, request: Request) -> Response:
    """Returns a ``csrf_token``: send it as ``X-CSRF-Token`` on every cookie-authenticated write.

    Repeated failures for a username or from a client address are answered 429 with
    ``Retry-After`` for a while (see docs/security.md), whether or not the username exists."""
    started = sign_in(ctx, body.username, body.password, client_address(request))
    if isinstance(started, Unauthenticated):
        # returned, not raised: raising would roll the audit record back with the transaction
        return json_response(started.to_json(), started.status_code)
    response = json_response(
        {
            "user_id": started.user_id,
            "username": started.username,
            "csrf_token": started.csrf_token,
            "expires_at": started.expires_at.isoformat(timespec="seconds") + "Z",
        }
    )
    set_session_cookies(response, started, ctx.appliance.config.session_hours)
    return response


@router.post(
    "/auth/logout",
    summary="Sign out: ends the session of the cookie",
    response=LoggedOut,
    raw_response=True,
)
def logout(ctx: RequestContext, request: Request) -> Response:
    sign_out(ctx, request)
    response = json_response({"signed_out": True})
    clear_session_cookies(response)
    return response


@dataclass(frozen=True)
class StartedSession:
    """A session just created: the cookie values are only ever held here, never stored."""

    user_id: str
    username: str
    token: str
    csrf_token: str
    expires_at: datetime


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def sign_in(
    ctx: RequestContext, username: str, password: str, address: str
) -> StartedSession | Unauthenticated:
    """Check a password and open a session (the API's login and the portal's sign-in form).

    Raises :class:`TooManyRequests` while the username or address is throttled; a wrong
    password is *returned* as the error, so the caller commits the audit records it wrote."""
    throttle = ctx.appliance.login_throttle
    wait = throttle.retry_after(username, address)
    if wait:
        raise TooManyRequests(
            "too many failed sign-ins for this user or from this address",
            retry_after=wait,
            hint=f"wait {wait} s (the Retry-After header) before trying again",
        )
    user = User.get_or_none(User.username == username)
    stored = user.password_hash if user is not None and user.password_hash else _dummy_hash()
    valid = verify_password(password, stored)
    if user is None or not valid or not user.is_active or not user.password_hash:
        ctx.audit("login-failed", "user", user.id if user else None, username)
        for penalty in throttle.failed(username, address):
            ctx.audit(
                "login-locked-out" if penalty.locked_out else "login-throttled",
                penalty.scope,
                None,
                penalty.subject,
                {"failures": penalty.failures, "seconds": penalty.seconds},
            )
        return Unauthenticated("wrong username or password")
    throttle.succeeded(username, address)
    token, csrf = generate_token(), generate_token()
    expires = utcnow() + timedelta(hours=ctx.appliance.config.session_hours)
    LoginSession.create_new(
        user=user, token_hash=token_hash(token), csrf_hash=token_hash(csrf), expires_at=expires
    )
    ctx.principal = Principal(user.id, user.username, via="session")  # the audit names who
    ctx.audit("login", "user", user.id, user.username)
    return StartedSession(user.id, user.username, token, csrf, expires)


def sign_out(ctx: RequestContext, request: Request) -> None:
    """End the session of the request's cookie (the caller was authenticated by it)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        LoginSession.delete().where(LoginSession.token_hash == token_hash(token)).execute()
    ctx.security_changed()
    ctx.audit("logout", "user", ctx.user.user_id, ctx.user.username)


def set_session_cookies(response: Response, started: StartedSession, session_hours: int) -> None:
    """The session cookie (HttpOnly) and the CSRF cookie (readable by the page's script)."""
    max_age = session_hours * 3600
    response.set_cookie(
        SESSION_COOKIE,
        started.token,
        max_age=max_age,
        httponly=True,
        secure=True,
        samesite="strict",
    )
    response.set_cookie(
        CSRF_COOKIE,
        started.csrf_token,
        max_age=max_age,
        httponly=False,
        secure=True,
        samesite="strict",
    )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, secure=True, httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, secure=True, samesite="strict")


__all__ = ["authenticate", "router"]
