"""One target: its health, agent and comms; run a health check; edit its roles; delete it.

The health check is the API's ``POST /targets/{id}/health-check``: it queues a task, and the
page goes to that task (``/tasks/{id}``) to watch it. Editing and deleting need ``target.edit``
in every environment the target is in, checked by the API's handlers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.agents import check_target_health
from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import write_in_worker
from octo_appliance.api.targets import TargetUpdate, delete_target, get_target, update_target
from octo_appliance.exceptions import ApiError
from octo_appliance.portal.forms import Again, lines, parse, redirect, refusal_errors, save
from octo_appliance.portal.session import Form, signed_in, signed_in_post
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

FIELDS = ("name", "roles", "environments", "disabled")


def _can_edit(ctx: RequestContext, target: dict[str, Any]) -> bool:
    return all(
        ctx.user.can(Permission.TARGET_EDIT, environment=env["id"])
        for env in target["environments"]
    )


async def _show(
    portal: Portal, request: Request, ctx: RequestContext, again: Again | None = None
) -> Response:
    """``GET /targets/{id}`` (or a refused edit again)."""
    again = again or Again()
    ref = request.path_params["id"]
    target = await portal.run(lambda: get_target(ctx, ref))
    typed = again.typed
    if typed is None:
        typed = {
            "name": target["name"],
            "roles": ", ".join(target["roles"]),
            "environments": ", ".join(env["name"] for env in target["environments"]),
            "disabled": target["disabled"],
        }
    context = {
        "target": target,
        "typed": typed,
        "errors": again.errors,
        "can_edit": _can_edit(ctx, target),
    }
    return portal.render(request, ctx, "admin/target.html", context, again.status_code)


show = signed_in(_show)


@signed_in_post
async def health_check(
    portal: Portal, request: Request, ctx: RequestContext, form: Form
) -> Response:
    """``POST /targets/{id}/health-check``: queue the check, then watch its task."""
    ref = request.path_params["id"]
    try:
        queued = await write_in_worker(ctx, lambda: check_target_health(ctx, ref))
    except ApiError as exc:
        if exc.status_code != 503:  # no task engine: say so on the target's page
            raise
        return await _show(portal, request, ctx, Again(None, refusal_errors(exc, ()), 503))
    return redirect(f"/tasks/{queued['task_id']}")


@signed_in_post
async def update(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /targets/{id}``: name, environments, roles, disabled."""
    ref = request.path_params["id"]
    typed: dict[str, Any] = {k: form.get(k, "").strip() for k in ("name", "roles", "environments")}
    typed["disabled"] = form.get("disabled") == "on"
    values = {
        "name": typed["name"],
        "roles": lines(typed["roles"]),
        "environments": lines(typed["environments"]),
        "disabled": typed["disabled"],
    }
    _, errors = await save(
        ctx,
        parse(TargetUpdate, values),
        lambda body: update_target(ctx, ref, body),
        lambda exc: refusal_errors(exc, FIELDS, "name"),
    )
    if not errors:
        return redirect(f"/targets/{ref}")
    return await _show(portal, request, ctx, Again(typed, errors, 422))


@signed_in_post
async def delete(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /targets/{id}/delete``: back to the environment it was in."""
    ref = request.path_params["id"]

    def remove() -> str:
        target = get_target(ctx, ref)
        delete_target(ctx, ref)
        envs = target["environments"]
        return f"/environments/{envs[0]['id']}" if envs else "/environments"

    back = await write_in_worker(ctx, remove)
    return redirect(back)
