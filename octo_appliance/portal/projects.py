"""The projects list (with the create form) and a project's overview page.

The list is the API's ``list_projects`` page by page (one count and one page query, whatever
the number of projects); the overview is the project, its newest releases and its row of the
dashboard (``api.dashboard.project_cells``: the latest deployment per environment).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.dashboard import project_cells
from octo_appliance.api.lifecycles import list_lifecycles
from octo_appliance.api.projects import ProjectCreate, create_project, get_project, list_projects
from octo_appliance.api.releases import list_releases
from octo_appliance.api.schemas import ListQuery
from octo_appliance.exceptions import Forbidden
from octo_appliance.portal.forms import Retry, attempt, checked, redirect, render_form
from octo_appliance.portal.session import Form, signed_in, signed_in_post
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

PAGE_SIZE = 50
RECENT_RELEASES = 10
CREATE_FIELDS = ("name", "description", "lifecycle")


def page_query(request: Request) -> ListQuery:
    raw = request.query_params.get("skip", "0")
    skip = int(raw) if raw.isdigit() and len(raw) < 10 else 0
    name = request.query_params.get("q", "").strip()[:200] or None
    return ListQuery(skip=skip, take=PAGE_SIZE, name=name)


def _lifecycles(ctx: RequestContext) -> list[dict[str, Any]]:
    """The lifecycles to choose from (none listed without the permission to read them)."""
    try:
        items: list[dict[str, Any]] = list_lifecycles(ctx, ListQuery(take=1000))["items"]
    except Forbidden:
        return []
    return items


async def _list_page(
    portal: Portal, request: Request, ctx: RequestContext, retry: Retry | None = None
) -> Response:
    query = page_query(request)

    def read() -> dict[str, Any]:
        page = list_projects(ctx, query)
        can_create = ctx.user.can_unscoped(Permission.PROJECT_EDIT)
        return {
            "page": page,
            "lifecycles": _lifecycles(ctx) if can_create else [],
            "can_create": can_create,
        }

    data = {**await portal.run(read), "query": query, "page_size": PAGE_SIZE}
    return render_form(portal, request, ctx, "projects/list.html", data, *(retry or ()))


@signed_in
async def show_list(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /projects``: a page of projects, filtered by name with ``?q=``."""
    return await _list_page(portal, request, ctx)


@signed_in_post
async def create(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /projects``: the API's create; back to the form with errors next to fields."""
    typed = {name: form.get(name, "") for name in CREATE_FIELDS}
    body = {"name": typed["name"], "description": typed["description"]}
    if typed["lifecycle"]:
        body["lifecycle"] = typed["lifecycle"]
    made, errors = await attempt(
        ctx,
        lambda: create_project(ctx, checked(ProjectCreate, body)),
        lambda field: field if field in CREATE_FIELDS else None,
        conflict="name",
    )
    if errors is not None:
        return await _list_page(portal, request, ctx, (typed, errors))
    return redirect(f"/projects/{made['id']}")


def project_nav(project: dict[str, Any], current: str) -> dict[str, Any]:
    """The project's own tabs (overview, process, variables, releases) for its pages."""
    base = f"/projects/{project['id']}"
    tabs = [
        (base, "Overview"),
        (base + "/process", "Process"),
        (base + "/variables", "Variables"),
        (base + "/releases", "Releases"),
    ]
    # the main navigation marks "Projects" on every page of a project
    return {"project": project, "tabs": tabs, "tab": current, "current": "/projects"}


def overview_rows(cells: dict[str, Any]) -> list[dict[str, Any]]:
    """Each environment the caller may view with the project's latest deployment there."""
    latest = {item["environment_id"]: item for item in cells["items"]}
    return [{"environment": env, "latest": latest.get(env["id"])} for env in cells["environments"]]


@signed_in
async def overview(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /projects/{ref}`` (id or name): releases, latest deployment per environment."""
    ref = request.path_params["ref"]

    def read() -> dict[str, Any]:
        project = get_project(ctx, ref)
        releases = list_releases(ctx, project["id"], ListQuery(take=RECENT_RELEASES))
        pid = project["id"]
        return {
            **project_nav(project, f"/projects/{pid}"),
            "releases": releases,
            "rows": overview_rows(project_cells(ctx, pid)),
            "can_release": ctx.user.can(Permission.DEPLOYMENT_CREATE, project=pid),
        }

    data = await portal.run(read)
    return portal.render(request, ctx, "projects/overview.html", data)
