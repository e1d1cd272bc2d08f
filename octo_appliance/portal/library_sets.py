"""The library variable sets list, with the create form (each set's variables are edited on
the shared variables editor, :mod:`octo_appliance.portal.variables`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.library_sets import LibrarySetIn, create_library_set, list_library_sets
from octo_appliance.api.schemas import ListQuery
from octo_appliance.portal.forms import Retry, attempt, checked, redirect, render_form
from octo_appliance.portal.session import Form, signed_in, signed_in_post
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

FIELDS = ("name", "description")


async def _page(
    portal: Portal, request: Request, ctx: RequestContext, retry: Retry | None = None
) -> Response:
    def read() -> dict[str, Any]:
        return {
            "sets": list_library_sets(ctx, ListQuery(take=1000)),
            "can_create": ctx.user.can_unscoped(Permission.VARIABLE_EDIT),
        }

    data = await portal.run(read)
    return render_form(portal, request, ctx, "projects/library_sets.html", data, *(retry or ()))


@signed_in
async def show_list(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /library-sets``."""
    return await _page(portal, request, ctx)


@signed_in_post
async def create(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /library-sets``: the API's create, then the new set's variables page."""
    typed = {name: form.get(name, "") for name in FIELDS}
    made, errors = await attempt(
        ctx,
        lambda: create_library_set(ctx, checked(LibrarySetIn, typed)),
        lambda field: field if field in FIELDS else None,
        conflict="name",
    )
    if errors is not None:
        return await _page(portal, request, ctx, (typed, errors))
    return redirect(f"/library-sets/{made['id']}")
