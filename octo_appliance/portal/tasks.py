"""The tasks list and the task page: state, per-step and per-target progress, the live log.

Everything is read through the API's own handlers (``api/tasks.py``, ``api/interruptions.py``),
so a person sees exactly the tasks their ``task.view`` grants cover. The log is a window
(``task_log.py``); the page's script follows the rest. While the task runs, the progress
part of the page (``/tasks/{id}/progress``) is fetched again every few seconds by htmx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.interruptions import InterruptionQuery, list_interruptions
from octo_appliance.api.routing import validation_details
from octo_appliance.api.tasks import TaskListQuery, get_task, list_tasks, task_allowed
from octo_appliance.db.tasks import FINAL_STATES, TASK_STATES, ServerTask
from octo_appliance.engine import console, health
from octo_appliance.engine.lifecycles import DEPLOYMENT_TASK_KIND
from octo_appliance.exceptions import ApiError, Forbidden
from octo_appliance.portal import task_log
from octo_appliance.portal.session import signed_in
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.api.context import RequestContext
    from octo_appliance.portal.routes import Portal

PAGE_SIZE = 50
#: the kinds the engine runs (``background.py`` registers them)
KINDS = (DEPLOYMENT_TASK_KIND, console.KIND, health.KIND)


def _query(params: Any) -> tuple[TaskListQuery, dict[str, str]]:
    """The list's filters from the query string; unknown values are errors, not a 500."""
    chosen = {name: params.get(name, "") for name in ("state", "kind", "name", "skip")}
    raw: dict[str, Any] = {k: v for k, v in chosen.items() if v}
    raw["take"] = PAGE_SIZE
    try:
        return TaskListQuery.model_validate(raw), {}
    except ValidationError as exc:
        errors = {str(d["field"]): str(d["message"]) for d in validation_details(exc)}
        safe = {k: v for k, v in raw.items() if k not in errors and k != "take"}
        return TaskListQuery.model_validate({**safe, "take": PAGE_SIZE}), errors


@signed_in
async def index(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /tasks?state=&kind=&name=&skip=``: newest first, 50 a page."""
    query, errors = _query(request.query_params)
    page = await portal.run(lambda: list_tasks(ctx, query))
    context = {
        "tasks": page["items"],
        "total": page["total"],
        "query": query,
        "errors": errors,
        "states": TASK_STATES,
        "kinds": KINDS,
        "next_skip": query.skip + PAGE_SIZE if query.skip + PAGE_SIZE < page["total"] else None,
        "prev_skip": max(0, query.skip - PAGE_SIZE) if query.skip else None,
    }
    return portal.render(request, ctx, "tasks.html", context, 422 if errors else 200)


def progress(ctx: RequestContext, task_id: str) -> dict[str, Any]:
    """The task, its steps and targets, its interruptions and what the caller may do."""
    task = get_task(ctx, task_id)
    row = ServerTask(**{k: task[k] for k in ("environment_id", "project_id")})
    try:
        asked = list_interruptions(ctx, InterruptionQuery(task=task_id, take=100))["items"]
    except Forbidden:  # task.view without project.view: no interruptions to show
        asked = []
    return {
        "task": task,
        "final": task["state"] in FINAL_STATES,
        "steps": task["summary"].get("steps") or [],
        "may_cancel": task_allowed(ctx.user, Permission.TASK_CANCEL, row),
        "interruptions": asked,
        "pending": [item for item in asked if item["state"] == "pending"],
    }


async def page(
    portal: Portal,
    request: Request,
    ctx: RequestContext,
    answer: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    """``GET /tasks/{id}`` (``?before=SEQ``: the log window before that line); ``answer``:
    a refused answer to show again (notes, errors)."""
    task_id = request.path_params["task_id"]
    before = task_log.parse_before(request.query_params.get("before"))

    def read() -> dict[str, Any]:
        shown = progress(ctx, task_id)
        shown["log"] = task_log.window(ctx, task_id, before, shown["task"])
        return shown

    context = await portal.run(read)
    context.update(
        task_id=task_id,
        before=before,
        levels=task_log.LEVELS,
        answer=answer or {},
        targets=_log_targets(context),
    )
    return portal.render(request, ctx, "task.html", context, status_code)


show = signed_in(page)


def _log_targets(context: dict[str, Any]) -> list[tuple[str, str]]:
    """The targets a person may narrow the log to: the task's, by name."""
    named = {item["target_id"]: item["target_name"] for item in context["task"]["targets"]}
    for step in context["steps"]:
        named.update({item["id"]: item["name"] for item in step.get("targets", [])})
    for line in context["log"]["lines"]:
        if line["target"]:
            named.setdefault(line["target"]["id"], line["target"]["name"])
    return sorted(named.items(), key=lambda item: (item[1], item[0]))


@signed_in
async def progress_part(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /tasks/{id}/progress``: the part of the task page htmx refreshes while it runs."""
    task_id = request.path_params["task_id"]
    try:
        context = await portal.run(lambda: progress(ctx, task_id))
    except ApiError as exc:
        return Response(exc.message, exc.status_code, media_type="text/plain")
    context.update(task_id=task_id, answer={})
    return portal.render(request, ctx, "task_progress.html", context)
