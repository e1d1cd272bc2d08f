"""Your API keys: list, create (the key shown once, in the answer to the create form), revoke.

The key exists in clear only in the answer to ``POST /keys`` (a ``no-store`` page); the list
shows the prefix people recognise a key by, never the key. Every user manages their own keys,
as in the API (``api/api_keys.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.api_keys import ApiKeyIn, ApiKeyQuery, create_key, delete_key, list_api_keys
from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import write_in_worker
from octo_appliance.portal.forms import parse, redirect, refusal_errors, save
from octo_appliance.portal.session import Form, signed_in, signed_in_post

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal


@signed_in
async def index(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /keys``."""
    return await _page(portal, request, ctx, "", {})


async def _page(
    portal: Portal,
    request: Request,
    ctx: RequestContext,
    name: str,
    errors: dict[str, str],
    created: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    keys = await portal.run(lambda: list_api_keys(ctx, ApiKeyQuery(take=1000)))
    context = {"keys": keys["items"], "name": name, "errors": errors, "created": created}
    return portal.render(request, ctx, "admin/keys.html", context, status_code)


@signed_in_post
async def create(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /keys``: the new key, on this answer only."""
    name = form.get("name", "").strip()
    created, errors = await save(
        ctx,
        parse(ApiKeyIn, {"name": name}),
        lambda body: create_key(ctx, body),
        lambda exc: refusal_errors(exc, ("name",), "name"),
    )
    if not errors:
        return await _page(portal, request, ctx, "", {}, created, 201)
    return await _page(portal, request, ctx, name, errors, status_code=422)


@signed_in_post
async def revoke(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /keys/{id}/revoke``."""
    key_id = request.path_params["id"]
    await write_in_worker(ctx, lambda: delete_key(ctx, key_id))
    return redirect("/keys")
