"""Environments: the list (with a create form), one environment with its targets, edit, delete.

Every read and write is the API's own handler (``api/environments.py``, ``api/targets.py``), so
the same permissions hold: the forms are drawn only for someone who may use them, and a forged
post from anyone else is refused by the handler (403), not by the page.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.environments import (
    EnvironmentIn,
    EnvironmentUpdate,
    create_environment,
    delete_environment,
    get_environment,
    list_environments,
    update_environment,
)
from octo_appliance.api.schemas import ListQuery
from octo_appliance.api.targets import TargetListQuery, list_targets
from octo_appliance.exceptions import ApiError
from octo_appliance.portal.forms import (
    Again,
    above_form,
    number,
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

FIELDS = ("name", "description", "sort_order")
ALL = ListQuery(take=1000)


def _values(form: dict[str, str]) -> dict[str, Any]:
    """The form as the API's body (an empty order is the default, 0)."""
    values: dict[str, Any] = {k: form.get(k, "").strip() for k in ("name", "description")}
    values["sort_order"] = number(form.get("sort_order", "").strip() or "0")
    return values


def _refusal(exc: ApiError) -> dict[str, str]:
    return refusal_errors(exc, FIELDS, "name")


def _health(ctx: RequestContext) -> dict[str, Counter[str]]:
    """environment id -> how many of its targets are in each health state (one listing)."""
    counts: dict[str, Counter[str]] = {}
    if not ctx.user.can(Permission.TARGET_VIEW):
        return counts
    for target in list_targets(ctx, TargetListQuery(take=1000))["items"]:
        for env in target["environments"]:
            counts.setdefault(env["id"], Counter())[target["health_status"]] += 1
    return counts


async def _index(
    portal: Portal, request: Request, ctx: RequestContext, again: Again | None = None
) -> Response:
    """``GET /environments``; after a refused create, the form again with its errors."""
    again = again or Again({"sort_order": "0"})

    def read() -> dict[str, Any]:
        return {"environments": list_environments(ctx, ALL)["items"], "health": _health(ctx)}

    data = await portal.run(read)
    context = {
        **data,
        "can_create": ctx.user.can_unscoped(Permission.ENVIRONMENT_EDIT),
        "typed": again.typed,
        "errors": again.errors,
    }
    return portal.render(request, ctx, "admin/environments.html", context, again.status_code)


index = signed_in(_index)


@signed_in_post
async def create(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /environments``: to the new environment, or the form again with its errors."""
    values = _values(form)
    made, errors = await save(
        ctx, parse(EnvironmentIn, values), lambda body: create_environment(ctx, body), _refusal
    )
    if not errors:
        return redirect(f"/environments/{made['id']}")
    return await _index(portal, request, ctx, Again(values, errors, 422))


async def _show(
    portal: Portal, request: Request, ctx: RequestContext, again: Again | None = None
) -> Response:
    """``GET /environments/{id}``: its settings and its targets (or a refused edit again)."""
    again = again or Again()
    ref = request.path_params["id"]

    def read() -> dict[str, Any]:
        env = get_environment(ctx, ref)
        targets: list[dict[str, Any]] = []
        if ctx.user.can(Permission.TARGET_VIEW, environment=env["id"]):
            query = TargetListQuery(environment=env["id"], take=1000)
            targets = list_targets(ctx, query)["items"]
        return {"environment": env, "targets": targets}

    data = await portal.run(read)
    env_id = data["environment"]["id"]
    context = {
        **data,
        "typed": again.typed or data["environment"],
        "errors": again.errors,
        "can_edit": ctx.user.can(Permission.ENVIRONMENT_EDIT, environment=env_id),
        "can_add_target": ctx.user.can(Permission.TARGET_EDIT, environment=env_id),
    }
    return portal.render(request, ctx, "admin/environment.html", context, again.status_code)


show = signed_in(_show)


@signed_in_post
async def update(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /environments/{id}``: save the edit form."""
    ref = request.path_params["id"]
    values = _values(form)
    parsed = parse(EnvironmentUpdate, values)
    _, errors = await save(ctx, parsed, lambda body: update_environment(ctx, ref, body), _refusal)
    if not errors:
        return redirect(f"/environments/{ref}")
    return await _show(portal, request, ctx, Again(values, errors, 422))


@signed_in_post
async def delete(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /environments/{id}/delete``: a 409 (it still holds targets) says so on its page."""
    ref = request.path_params["id"]
    _, errors = await submit(ctx, lambda: delete_environment(ctx, ref), above_form)
    if errors:
        return await _show(portal, request, ctx, Again(None, errors, 409))
    return redirect("/environments")
