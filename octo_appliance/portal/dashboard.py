"""The dashboard page: projects down, environments across, the latest deployment per cell.

It reads exactly what ``GET /api/v1/dashboard`` answers (the same handler, so the same
``project.view`` limits) and only arranges it into rows. The cells change live
(``portal/live.py``): the page carries the change token it was drawn at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.portal.live import dashboard_now

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal


def grid(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per project: ``{"project": ..., "cells": [item or None per environment]}``."""
    items = {(item["project_id"], item["environment_id"]): item for item in data["items"]}
    return [
        {
            "project": project,
            "cells": [items.get((project["id"], env["id"])) for env in data["environments"]],
        }
        for project in data["projects"]
    ]


async def show(portal: Portal, request: Request) -> Response:
    ctx = await portal.signed_in(request)
    if ctx is None:
        return portal.sign_in_first(request)
    board_version, data = await portal.run(lambda: dashboard_now(ctx))
    context = {
        "environments": data["environments"],
        "rows": grid(data),
        "board_version": board_version,
    }
    return portal.render(request, ctx, "dashboard.html", context)
