"""The process editor: a project's steps, and a form per step drawn from its step type.

Every change (add, edit, move, disable or enable, delete) reads the process, changes the one
step and saves the whole list through the API's ``put_process`` with the ``version`` the page
showed, so a change made elsewhere in between is the API's 409, not a silent overwrite; the
API checks everything (names, roles, each property against the step type). Steps are
addressed by position (``/projects/P/process/steps/2``, from 1), a deep link to a step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.environments import list_environments
from octo_appliance.api.process import ProcessIn, get_process, put_process
from octo_appliance.api.projects import get_project
from octo_appliance.api.schemas import ListQuery
from octo_appliance.api.step_types import list_step_types
from octo_appliance.exceptions import Forbidden, NotFound
from octo_appliance.portal import step_form
from octo_appliance.portal.forms import Refused, attempt, checked, redirect
from octo_appliance.portal.projects import project_nav
from octo_appliance.portal.session import Form, signed_in, signed_in_post
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

ACTIONS = ("move-up", "move-down", "disable", "enable", "delete")


def environments(ctx: RequestContext) -> list[dict[str, Any]]:
    """The environments the user may see, to choose from (none without the permission)."""
    try:
        items: list[dict[str, Any]] = list_environments(ctx, ListQuery(take=1000))["items"]
    except Forbidden:
        return []
    return items


def _read(ctx: RequestContext, ref: str) -> dict[str, Any]:
    project = get_project(ctx, ref)
    pid = project["id"]
    return {
        **project_nav(project, f"/projects/{pid}/process"),
        "process": get_process(ctx, pid),
        "step_types": {item["name"]: item for item in list_step_types(ctx)["items"]},
        "environments": environments(ctx),
        "can_edit": ctx.user.can(Permission.PROJECT_EDIT, project=pid),
    }


def _position(request: Request, steps: list[Any]) -> int:
    """The step's index from its 1-based position in the path (404 past the end)."""
    raw = str(request.path_params["position"])
    if not raw.isdigit() or not 1 <= int(raw) <= len(steps):
        raise NotFound(f"the process has no step {raw}", hint="the process page lists the steps")
    return int(raw) - 1


@signed_in
async def show(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /projects/{ref}/process``: the steps in run order with their actions."""
    return await _list(portal, request, ctx)


async def _list(
    portal: Portal, request: Request, ctx: RequestContext, refusal: Refused | None = None
) -> Response:
    ref = request.path_params["ref"]
    data = await portal.run(lambda: _read(ctx, ref))
    names = {env["id"]: env["name"] for env in data["environments"]}
    context = {**data, "env_names": names, "problems": refusal.problems if refusal else []}
    status = refusal.status_code if refusal else 200
    return portal.render(request, ctx, "projects/process.html", context, status)


def _form_page(
    portal: Portal,
    request: Request,
    ctx: RequestContext,
    data: dict[str, Any],
    step_type: str,
    values: dict[str, str],
    index: int | None,
    errors: Refused | None = None,
) -> Response:
    kind = data["step_types"].get(step_type)
    if kind is None:
        known = ", ".join(data["step_types"]) or "none"
        raise NotFound(f"no step type '{step_type}'", hint=f"registered step types: {known}")
    stored = data["process"]["steps"][index] if index is not None else {}
    context = {
        **data,
        "kind": kind,
        "fields": step_form.fields(kind["properties"]),
        "values": values,
        "chosen_envs": [name[len(step_form.ENV) :] for name in values if name.startswith("env.")],
        "index": index,
        "secrets_set": {
            name for name in (stored.get("properties") or {}) if name in _secret_names(kind)
        },
        "errors": errors.fields if errors else {},
        "problems": errors.problems if errors else [],
    }
    status = errors.status_code if errors else 200
    return portal.render(request, ctx, "projects/step.html", context, status)


def _secret_names(kind: dict[str, Any]) -> set[str]:
    return {prop["name"] for prop in kind["properties"] if prop.get("secret")}


@signed_in
async def new_step(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /projects/{ref}/process/steps/new?type=T``: an empty form for a step of type T."""
    data = await portal.run(lambda: _read(ctx, request.path_params["ref"]))
    if not data["can_edit"]:
        raise Forbidden("you may view this project's process, not change it")
    step_type = request.query_params.get("type", "")
    return _form_page(portal, request, ctx, data, step_type, {}, None)


@signed_in
async def edit_step(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /projects/{ref}/process/steps/{position}``: one step (read-only to a viewer)."""
    data = await portal.run(lambda: _read(ctx, request.path_params["ref"]))
    index = _position(request, data["process"]["steps"])
    step = data["process"]["steps"][index]
    kind = data["step_types"].get(step["type"], {"properties": []})
    values = step_form.form_values(step, kind["properties"])
    return _form_page(portal, request, ctx, data, step["type"], values, index)


def _save(ctx: RequestContext, pid: str, version: str, steps: list[dict[str, Any]]) -> Any:
    body: dict[str, Any] = {"steps": steps}
    if version.isdigit():
        body["version"] = int(version)
    return put_process(ctx, pid, checked(ProcessIn, body))


@signed_in_post
async def save_step(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST .../process/steps`` (add) or ``.../steps/{position}`` (replace one step)."""
    data = await portal.run(lambda: _read(ctx, request.path_params["ref"]))
    pid = data["project"]["id"]
    steps = list(data["process"]["steps"])
    editing = "position" in request.path_params
    index = _position(request, steps) if editing else len(steps)
    step_type = steps[index]["type"] if editing else form.get("type", "")
    kind = data["step_types"].get(step_type, {"properties": []})
    schema = kind["properties"]
    visible = [env["id"] for env in data["environments"]]
    stored = steps[index] if editing else None
    hidden = [env for env in (stored or {}).get("environments", []) if env not in visible]
    step, own_errors = step_form.parse(form, schema, step_type, visible, stored)
    step["environments"] += hidden
    typed = {k: v for k, v in form.items() if k != "csrf_token"}
    for prop in schema:  # a secret is never sent back to the browser
        if prop.get("secret"):
            typed.pop(step_form.PROP + prop["name"], None)
    shown = index if editing else None
    if own_errors:
        invalid = Refused(422, own_errors)
        return _form_page(portal, request, ctx, data, step_type, typed, shown, invalid)
    steps[index : index + 1] = [step]
    version = form.get("version", "")
    where = step_form.place(index, bool(schema))
    _, errors = await attempt(ctx, lambda: _save(ctx, pid, version, steps), where)
    if errors is not None:
        return _form_page(portal, request, ctx, data, step_type, typed, shown, errors)
    return redirect(f"/projects/{pid}/process#step-{index + 1}")


def _changed(steps: list[dict[str, Any]], index: int, action: str) -> list[dict[str, Any]]:
    steps = list(steps)
    if action == "delete":
        del steps[index]
    elif action in ("disable", "enable"):
        steps[index] = {**steps[index], "disabled": action == "disable"}
    else:
        other = index - 1 if action == "move-up" else index + 1
        if 0 <= other < len(steps):
            steps[index], steps[other] = steps[other], steps[index]
    return steps


@signed_in_post
async def act(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST .../steps/{position}/{action}``: move up or down, disable, enable, delete."""
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise NotFound(f"no step action '{action}'", hint="actions: " + ", ".join(ACTIONS))
    data = await portal.run(lambda: _read(ctx, request.path_params["ref"]))
    pid = data["project"]["id"]
    steps = data["process"]["steps"]
    index = _position(request, steps)
    changed = _changed(steps, index, action)
    _, errors = await attempt(
        ctx, lambda: _save(ctx, pid, form.get("version", ""), changed), lambda field: None
    )
    if errors is not None:
        return await _list(portal, request, ctx, errors)
    moved = {"move-up": index - 1, "move-down": index + 1, "delete": index - 1}
    return redirect(f"/projects/{pid}/process#step-{max(moved.get(action, index), 0) + 1}")
