"""``POST /api/v1/targets/{ref}/update-agent``: update one target's agent now.

What an update does, and when it happens by itself, is engine/agent_updates.py (and
docs/agent.md, "Self-update"). Asking for it also retries a build that failed on that target,
which the appliance never does by itself. The answer is the target's update state after the
request, with a sentence saying what happens next.
"""

from __future__ import annotations

from typing import Any

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Out
from octo_appliance.api.targets import editable_target
from octo_appliance.engine.agent_updates import IN_PROGRESS, NONE, UpdateFailed
from octo_appliance.exceptions import Conflict

router = Router("agent-updates")

AGENT_STYLES = ("listening", "polling")


class UpdateRequested(Out):
    id: str
    name: str
    agent_version: str
    update: str
    message: str


@router.post(
    "/targets/{ref}/update-agent",
    summary="Update the target's agent to the build this appliance serves",
    response=UpdateRequested,
    status_code=202,
    errors=(409,),
)
def update_agent(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Needs ``target.edit`` in every environment the target is in."""
    target = editable_target(ctx, ref)
    if target.communication_style not in AGENT_STYLES:
        raise Conflict(
            f"target '{target.name}' has no agent to update "
            f"(communication style {target.communication_style})",
            hint="only listening and polling targets run an agent",
        )
    updates = ctx.appliance.agent_updates
    if updates is None:
        state = NONE
        message = "this node does not serve agents now; nothing was started"
    else:
        try:
            state = updates.request(target.id)
        except UpdateFailed as exc:
            raise Conflict(
                f"target '{target.name}' cannot be updated: {exc.message}",
                hint="see docs/agent.md (self-update)",
            ) from None
        message = (
            "the update started; tasks for this target wait for it"
            if state == IN_PROGRESS
            else "the agent already runs the build this appliance serves"
        )
    ctx.audit("update-agent", "target", target.id, target.name, {"update": state})
    return {
        "id": target.id,
        "name": target.name,
        "agent_version": target.agent_version,
        "update": state,
        "message": message,
    }
