"""Users: the list with their teams, a create form, and deactivating or activating one.

Through the API's handlers (``api/users.py``): administrators only (an unscoped ``user.view``
to read, ``user.edit`` to change), and a password never goes back into a page, not even the
one typed into a refused form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.schemas import ListQuery
from octo_appliance.api.users import UserIn, UserUpdate, create_user, list_users, update_user
from octo_appliance.portal.forms import (
    Again,
    above_form,
    parse,
    redirect,
    refusal_errors,
    save,
    submit,
)
from octo_appliance.portal.session import Form, signed_in, signed_in_post
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

FIELDS = ("username", "display_name", "email", "password", "is_active")


async def _page(
    portal: Portal, request: Request, ctx: RequestContext, again: Again | None = None
) -> Response:
    """``GET /users``; after a refused create, the form again with its errors."""
    again = again or Again({"is_active": True})
    users = await portal.run(lambda: list_users(ctx, ListQuery(take=1000)))
    context = {
        "users": users["items"],
        "typed": again.typed,
        "errors": again.errors,
        "can_edit": ctx.user.can_unscoped(Permission.USER_EDIT),
        "me": ctx.user.user_id,
    }
    return portal.render(request, ctx, "admin/users.html", context, again.status_code)


index = signed_in(_page)


@signed_in_post
async def create(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /users``: back to the list, or the form again (without the password)."""
    typed: dict[str, Any] = {key: form.get(key, "").strip() for key in FIELDS[:3]}
    typed["is_active"] = form.get("is_active") == "on"
    password = form.get("password", "")
    _, errors = await save(
        ctx,
        parse(UserIn, {**typed, "password": password or None}),
        lambda body: create_user(ctx, body),
        lambda exc: refusal_errors(exc, FIELDS, "username"),
    )
    if not errors:
        return redirect("/users")
    return await _page(portal, request, ctx, Again(typed, errors, 422))


@signed_in_post
async def set_active(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /users/{id}/active``: ``active=on`` activates, anything else deactivates (their
    sessions end, their keys stop working)."""
    ref = request.path_params["id"]
    body = UserUpdate(is_active=form.get("active") == "on")
    _, errors = await submit(ctx, lambda: update_user(ctx, ref, body), above_form)
    if errors:
        return await _page(portal, request, ctx, Again({"is_active": True}, errors, 409))
    return redirect("/users")
