"""``GET /api/v1/transports``: every loaded transport with its per-target settings schema.

What the portal draws a target's form from, third-party transports included: each setting's
type, whether it is required or secret (write-only: a form masks it and a target answers only
whether it is set), its help text, default and bounds (see
:mod:`octo_appliance.plugin_api.target_settings`). A target's ``transport_settings`` block is
checked against exactly this. Reading it needs ``target.view``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Out
from octo_appliance.api.step_types import PropertyOut, described
from octo_appliance.security.permissions import Permission

router = Router("targets")


class TransportOut(Out):
    name: str = Field(description="The communication_style of its targets.")
    summary: str
    plugin: str = Field(description="The plugin that registered it.")
    agent_transport: bool = Field(description="Whether its targets run an agent.")
    target_settings: list[PropertyOut] = Field(
        description="What each of its targets takes in transport_settings (empty: nothing)."
    )


class TransportList(Out):
    items: list[TransportOut]
    total: int = Field(description="How many transports are loaded.")


@router.get(
    "/transports",
    summary="Transports and their per-target settings (to draw a target's form)",
    response=TransportList,
)
def list_transports(ctx: RequestContext) -> dict[str, Any]:
    ctx.require(Permission.TARGET_VIEW)
    transports = ctx.appliance.plugins.transports
    return described(transports, "target_settings", agent_transport="agent_transport")
