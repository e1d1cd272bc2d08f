"""The dashboard page: projects down, environments across, the latest deployment per cell.

It reads exactly what ``GET /api/v1/dashboard`` answers (the same handler, so the same
``project.view`` limits) and only arranges it into rows. The cells change live
(``portal/live.py``): the page carries the change token it was drawn at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.dashboard import DashboardQuery
from octo_appliance.portal.forms import field_errors, validate
from octo_appliance.portal.live import dashboard_now
from octo_appliance.portal.session import signed_in

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


#: projects per page: a screenful, and a page that stays fast with thousands of projects
#: (bench/portal.py: 50 rows measured 29.7-32.7 ms p99 of server time, against the goal of
#: 30 ms; the cells' rows cost ~0.2 ms each); ``?name=`` finds the others
PAGE_SIZE = 25


def pages(name: str, skip: int, total: int) -> dict[str, str | None]:
    """Links to the previous and next page of projects, keeping the name filter."""

    def link(at: int) -> str:
        query = urlencode({k: v for k, v in (("name", name), ("skip", at)) if v})
        return "/?" + query if query else "/"

    return {
        "previous": link(max(skip - PAGE_SIZE, 0)) if skip > 0 else None,
        "next": link(skip + PAGE_SIZE) if skip + PAGE_SIZE < total else None,
    }


def page_query(params: Mapping[str, str]) -> tuple[DashboardQuery, list[dict[str, Any]]]:
    """The page of projects ``?name=&skip=`` asks for (the first page when they are refused),
    and the refusal's details; the live stream reads the same page the page shows."""
    name = params.get("name", "").strip()
    values = {"name": name or None, "skip": params.get("skip", "0")}
    query, details = validate(DashboardQuery, {**values, "take": PAGE_SIZE})
    return query or DashboardQuery(take=PAGE_SIZE, name=None if details else name or None), details


@signed_in
async def show(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    name = request.query_params.get("name", "").strip()
    query, details = page_query(request.query_params)
    board_version, data = await portal.run(lambda: dashboard_now(ctx, query))
    context = {
        "environments": data["environments"],
        "rows": grid(data),
        "board_version": board_version,
        "name": name,
        "errors": field_errors(details, ("name",)),
        "total": data["total"],
        "page_size": PAGE_SIZE,
        "first": query.skip + 1,
        "last": query.skip + len(data["projects"]),
        **pages(name, query.skip, data["total"]),
    }
    return portal.render(request, ctx, "dashboard.html", context, 422 if details else 200)
