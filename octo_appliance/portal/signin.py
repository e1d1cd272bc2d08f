"""Sign in and sign out: the API's session login (``api/session.py``) behind two forms.

A refused sign-in shows its error next to the field it concerns and keeps the username (never
the password); a throttled one says how long to wait, as the API's 429 does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import validation_details, write_in_worker
from octo_appliance.api.session import (
    LoginIn,
    clear_session_cookies,
    client_address,
    set_session_cookies,
    sign_in,
    sign_out,
)
from octo_appliance.exceptions import TooManyRequests, Unauthenticated
from octo_appliance.portal.session import SIGN_IN_PATH, read_form, safe_next

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

FIELDS = {"username": "your username", "password": "your password"}


def field_errors(username: str, password: str) -> dict[str, str]:
    """The form's problems by field name (empty: the values fit ``LoginIn``)."""
    try:
        LoginIn(username=username, password=password)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for detail in validation_details(exc):
            field = str(detail["field"])
            value = username if field == "username" else password
            errors[field] = f"Enter {FIELDS[field]}." if not value else str(detail["message"])
        return errors
    return {}


def _form(
    portal: Portal,
    request: Request,
    *,
    username: str = "",
    next_path: str = "/",
    errors: dict[str, str] | None = None,
    problem: str = "",
    status_code: int = 200,
) -> Response:
    errors = errors or {}
    # the keyboard starts where the person has something to do: the first wrong field
    focus = next(iter(errors), "password" if username else "username")
    context = {
        "username": username,
        "next": next_path,
        "errors": errors,
        "problem": problem,
        "focus": focus,
    }
    return portal.render(request, None, "signin.html", context, status_code)


async def show(portal: Portal, request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if await portal.signed_in(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    return _form(portal, request, next_path=next_path)


async def submit(portal: Portal, request: Request) -> Response:
    form = await read_form(portal.appliance, request)
    username, password = form.get("username", ""), form.get("password", "")
    next_path = safe_next(form.get("next"))

    def again(
        status_code: int, errors: dict[str, str] | None = None, problem: str = ""
    ) -> Response:
        return _form(
            portal,
            request,
            username=username,
            next_path=next_path,
            errors=errors,
            problem=problem,
            status_code=status_code,
        )

    errors = field_errors(username, password)
    if errors:
        return again(422, errors)
    ctx = RequestContext(portal.appliance, None, {})
    try:
        started = await write_in_worker(
            ctx, lambda: sign_in(ctx, username, password, client_address(request))
        )
    except TooManyRequests as exc:
        wait = f"wait {exc.retry_after} s before trying again"
        response = again(429, problem=f"{exc.message.capitalize()}: {wait}.")
        response.headers.update(exc.headers())
        return response
    if isinstance(started, Unauthenticated):
        return again(401, {"password": "Wrong username or password."})
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookies(response, started, portal.appliance.config.session_hours)
    return response


async def leave(portal: Portal, request: Request) -> Response:
    """``POST /signout``."""
    form = await read_form(portal.appliance, request)
    ctx = await portal.signed_in(request, form)
    if ctx is not None:
        await write_in_worker(ctx, lambda: sign_out(ctx, request))
    response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    clear_session_cookies(response)
    return response
