"""What a person does on a task page: cancel it, answer its interruptions.

Both are form posts with the CSRF field, run through the API's own handlers (``cancel_task``,
``submit_interruption``) in one write transaction with their audit record. A refused answer
shows the task page again with the error next to its field and the notes as typed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from octo_appliance.api.interruptions import SubmitIn, submit_interruption
from octo_appliance.api.routing import validation_details, write_in_worker
from octo_appliance.api.tasks import cancel_task
from octo_appliance.exceptions import Conflict, ValidationFailed
from octo_appliance.portal import tasks
from octo_appliance.portal.session import Form, signed_in_post

if TYPE_CHECKING:
    from octo_appliance.api.context import RequestContext
    from octo_appliance.portal.routes import Portal


@signed_in_post
async def cancel(portal: Portal, request: Request, ctx: RequestContext, _form: Form) -> Response:
    """``POST /tasks/{id}/cancel``: back to the task page (a finished task: 409 page)."""
    task_id = request.path_params["task_id"]
    await write_in_worker(ctx, lambda: cancel_task(ctx, task_id))
    return RedirectResponse(f"/tasks/{task_id}", status_code=303)


@signed_in_post
async def answer(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /tasks/{id}/interruptions/{iid}``: approve/reject/retry/... with notes."""
    task_id = request.path_params["task_id"]
    interruption_id = request.path_params["interruption_id"]
    typed = {"id": interruption_id, "notes": form.get("notes", ""), "errors": {}}
    try:
        body = SubmitIn(result=form.get("result", ""), notes=typed["notes"])  # type: ignore[arg-type]
        await write_in_worker(ctx, lambda: submit_interruption(ctx, interruption_id, body))
    except ValidationError as exc:
        typed["errors"] = {str(d["field"]): str(d["message"]) for d in validation_details(exc)}
        return await tasks.page(portal, request, ctx, typed, 422)
    except (ValidationFailed, Conflict) as exc:
        fields = {str(d.get("field")): str(d.get("message")) for d in exc.details or []}
        typed["errors"] = fields or {"result": exc.message}
        typed["problem"] = exc.message
        return await tasks.page(portal, request, ctx, typed, exc.status_code)
    return RedirectResponse(f"/tasks/{task_id}#interruptions", status_code=303)
