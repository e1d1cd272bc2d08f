"""``GET /api/v1/step-types``: every loaded step type with its property schema.

What the portal draws a step's form from, third-party step types included: each property's
type, whether it is required or secret, its help text, default and allowed values (see
:mod:`octo_appliance.plugin_api.properties`). Reading it needs what reading a deployment
process needs (``project.view``, on any project).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Out
from octo_appliance.plugin_api.properties import PROPERTY_TYPES
from octo_appliance.plugin_api.registry import Registered
from octo_appliance.security.permissions import Permission

router = Router("process")


class PropertyOut(Out):
    name: str
    type: str = Field(description="One of: " + ", ".join(PROPERTY_TYPES))
    help: str
    required: bool
    secret: bool = Field(description="A form masks the value as it is typed.")
    default: Any = None
    enum: list[Any] | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None


class StepTypeOut(Out):
    name: str
    summary: str
    plugin: str = Field(description="The plugin that registered it.")
    properties: list[PropertyOut] = Field(
        description="Empty when the step type declares no schema (it checks its own)."
    )


class StepTypeList(Out):
    items: list[StepTypeOut]
    total: int


@router.get(
    "/step-types",
    summary="Step types and their property schemas (to draw a step's form)",
    response=StepTypeList,
)
def list_step_types(ctx: RequestContext) -> dict[str, Any]:
    ctx.require(Permission.PROJECT_VIEW)
    return described(ctx.appliance.plugins.step_types, "properties")


def described(entries: Iterable[Registered[Any]], schema: str, **more: str) -> dict[str, Any]:
    """A registry as listed: each class's name, summary, plugin, its ``schema`` attribute's
    properties described, and the class attributes named in ``more`` (answer key -> attr)."""
    items = [
        {
            "name": entry.name,
            "summary": entry.cls.summary,
            "plugin": entry.plugin,
            schema: [prop.describe() for prop in getattr(entry.cls, schema)],
            **{key: getattr(entry.cls, attr) for key, attr in more.items()},
        }
        for entry in entries
    ]
    return {"items": items, "total": len(items)}
