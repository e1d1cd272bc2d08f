"""The portal's glue to the API's session login: the same cookie, the same CSRF token.

A page is authenticated exactly as an API call (:func:`octo_appliance.api.auth.authenticate`);
the only difference is where a write carries its CSRF token: a hidden form field, filled
from the CSRF cookie when the page was rendered, instead of the ``X-CSRF-Token`` header. A form
posted from another site is refused before that (``Sec-Fetch-Site``), the sign-in form too.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from octo_appliance.api.auth import CSRF_COOKIE, authenticate
from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import read_body
from octo_appliance.exceptions import Forbidden, Unauthenticated, ValidationFailed

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance
    from octo_appliance.portal.routes import Portal, View

#: a posted form: ``{name: last value}``
Form = dict[str, str]
CSRF_FIELD = "csrf_token"
SIGN_IN_PATH = "/signin"
#: a form has a handful of fields, plus a checkbox per environment or library set ticked:
#: more is not a person's form
MAX_FORM_FIELDS = 500
CROSS_SITE = frozenset({"cross-site", "same-site"})


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host`` or a URL)."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def sign_in_redirect(next_path: str) -> RedirectResponse:
    target = SIGN_IN_PATH if next_path == "/" else f"{SIGN_IN_PATH}?next={quote(next_path)}"
    return RedirectResponse(target, status_code=303)


def csrf_token(request: Request) -> str:
    """The token the page's forms send back (the session's CSRF cookie, set at sign-in)."""
    return request.cookies.get(CSRF_COOKIE, "")


async def read_form(appliance: Appliance, request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as ``{name: last value}``.

    A cross-site post is refused first (403): the browser says where a form came from."""
    if request.headers.get("sec-fetch-site", "") in CROSS_SITE:
        raise Forbidden("a form posted from another site", hint="use the portal's own forms")
    raw = await read_body(request, appliance.config.max_body_bytes)
    try:
        fields = parse_qs(
            raw.decode("utf-8", errors="replace"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:  # more fields than any of the portal's forms has
        raise ValidationFailed(
            f"the form has more than {MAX_FORM_FIELDS} fields", hint="send the portal's own form"
        ) from None
    return {name: values[-1] for name, values in fields.items()}


def page_context(
    appliance: Appliance, request: Request, form: dict[str, str] | None = None
) -> RequestContext | None:
    """Who is asking, as a handler context; None without a valid session (sign in first).

    ``form`` (a write) must carry the session's CSRF token, else 403 as in the API."""
    token = None if form is None else form.get(CSRF_FIELD, "")
    try:
        principal = authenticate(appliance, request, csrf_token=token)
    except Unauthenticated:
        return None
    return RequestContext(appliance, principal, {})


def here(request: Request) -> str:
    """The path and query of the request: where to come back to after signing in."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def signed_in(
    view: Callable[[Portal, Request, RequestContext], Awaitable[Response]],
) -> View:
    """A page that needs a session: ``view`` gets its context; without one, sign in first."""

    @functools.wraps(view)
    async def page(portal: Portal, request: Request) -> Response:
        ctx = await portal.signed_in(request)
        if ctx is None:
            return portal.sign_in_first(request)
        return await view(portal, request, ctx)

    return page


def signed_in_post(
    view: Callable[[Portal, Request, RequestContext, Form], Awaitable[Response]],
) -> View:
    """A form post that needs a session: ``view`` gets its context and the form (its CSRF
    field checked: a bad token is the API's 403); without a session, sign in first."""

    @functools.wraps(view)
    async def post(portal: Portal, request: Request) -> Response:
        form = await read_form(portal.appliance, request)
        ctx = await portal.signed_in(request, form)
        if ctx is None:
            return portal.sign_in_first(request)
        return await view(portal, request, ctx, form)

    return post
