"""The script console: one script on the targets of an environment, its roles, or named targets.

The form posts to the API's ``run_script`` (``script.run``, the references in the body
checked before anything runs) and opens the new task's page. A refusal shows the form again
as typed, the API's errors next to their fields. Sensitive script variables are the API's
business (``variables``); the console form has none, so nothing secret is ever echoed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from octo_appliance.api.environments import list_environments
from octo_appliance.api.routing import write_in_worker
from octo_appliance.api.schemas import ListQuery
from octo_appliance.api.scripts import ScriptIn, run_script
from octo_appliance.api.targets import TargetListQuery, list_targets
from octo_appliance.exceptions import ApiError, Forbidden
from octo_appliance.portal.forms import by_field, number, problem
from octo_appliance.portal.session import Form, signed_in, signed_in_post

if TYPE_CHECKING:
    from octo_appliance.api.context import RequestContext
    from octo_appliance.portal.routes import Portal

SYNTAXES = ("bash", "sh", "python", "pwsh")
FIELDS = ("environment", "roles", "targets", "syntax", "body", "timeout", "window")


#: targets offered as suggestions in the form (the field takes any name or id)
SUGGESTED_TARGETS = 500


def _choices(ctx: RequestContext) -> dict[str, Any]:
    """Environments to pick, and target names and roles to suggest (what the caller may view)."""
    try:
        environments = list(list_environments(ctx, ListQuery(take=1000))["items"])
    except Forbidden:
        environments = []
    try:
        targets = list_targets(ctx, TargetListQuery(take=SUGGESTED_TARGETS))["items"]
    except Forbidden:
        targets = []
    roles = sorted({role for target in targets for role in target["roles"]})
    return {
        "environments": environments,
        "target_names": [target["name"] for target in targets],
        "role_names": roles,
    }


def _names(text: str) -> list[str]:
    """``"web, db"`` -> ``["web", "db"]``."""
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


async def _page(
    portal: Portal,
    request: Request,
    ctx: RequestContext,
    typed: dict[str, str],
    errors: dict[str, str] | None = None,
    message: str = "",
    status_code: int = 200,
) -> Response:
    choices = await portal.run(lambda: _choices(ctx))
    context = {
        **choices,
        "syntaxes": SYNTAXES,
        "typed": typed,
        "errors": errors or {},
        "problem": message,
    }
    return portal.render(request, ctx, "scripts.html", context, status_code)


@signed_in
async def show(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /scripts`` (``?environment=&roles=&targets=`` fill the form: a deep link)."""
    typed = {name: request.query_params.get(name, "") for name in FIELDS}
    typed["syntax"] = typed["syntax"] or "bash"
    return await _page(portal, request, ctx, typed)


@signed_in_post
async def submit(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /scripts``: queue the script, then its task page."""
    typed = {name: form.get(name, "") for name in FIELDS}
    raw: dict[str, Any] = {
        "environment": typed["environment"] or None,
        "roles": _names(typed["roles"]),
        "targets": _names(typed["targets"]),
        "syntax": typed["syntax"],
        "body": typed["body"],
    }
    for optional in ("timeout", "window"):
        if typed[optional].strip():  # the API's types are strict: a number, not its text
            raw[optional] = number(typed[optional])
    try:
        body = ScriptIn.model_validate(raw)
        queued = await write_in_worker(ctx, lambda: run_script(ctx, body))
    except ValidationError as exc:
        return await _page(portal, request, ctx, typed, by_field(exc), problem(exc), 422)
    except ApiError as exc:
        if exc.status_code == 403:
            raise
        return await _page(
            portal, request, ctx, typed, by_field(exc), problem(exc), exc.status_code
        )
    return RedirectResponse(f"/tasks/{queued['task_id']}", status_code=303)
