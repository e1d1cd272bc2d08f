"""Releases: the list, the create form, a release's snapshot, and deploy/promote.

Creating calls the API's ``create_release`` (version, notes, a package version per package
the process deploys; left empty, the latest). A release's page shows what it snapshotted
(process, variables with sensitive values hidden, pinned packages) and, per environment of
its lifecycle, the API's own verdict (``can_deploy``/``reason`` from the release's
``environments``): a phase not reached yet is a disabled button with the reason. Deploying
is the API's ``create_deployment`` (the lifecycle checked again there) and opens the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.deployments import DeploymentIn, create_deployment
from octo_appliance.api.packages import PackageListQuery, list_packages
from octo_appliance.api.process import get_process
from octo_appliance.api.projects import get_project
from octo_appliance.api.releases import (
    ReleaseIn,
    create_release,
    get_project_release,
    list_releases,
)
from octo_appliance.engine.release_packages import packages_needed
from octo_appliance.exceptions import Forbidden
from octo_appliance.portal.forms import Retry, attempt, checked, redirect, render_form
from octo_appliance.portal.projects import PAGE_SIZE, page_query, project_nav
from octo_appliance.portal.session import Form, signed_in, signed_in_post
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

PACKAGE = "package."
#: versions offered per package in the create form
VERSIONS_SHOWN = 10


def _project(ctx: RequestContext, ref: str) -> dict[str, Any]:
    project = get_project(ctx, ref)
    return {**project_nav(project, f"/projects/{project['id']}/releases"), "pid": project["id"]}


@signed_in
async def show_list(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /projects/{ref}/releases``: newest first, a page at a time."""
    query = page_query(request)

    def read() -> dict[str, Any]:
        data = _project(ctx, request.path_params["ref"])
        pid = data["pid"]
        return {
            **data,
            "releases": list_releases(ctx, pid, query),
            "can_release": ctx.user.can(Permission.DEPLOYMENT_CREATE, project=pid),
        }

    context = {**await portal.run(read), "query": query, "page_size": PAGE_SIZE}
    return portal.render(request, ctx, "projects/releases.html", context)


def _needed(ctx: RequestContext, pid: str) -> list[dict[str, Any]]:
    """The packages the current process deploys, each with the feed's newest versions."""
    steps = get_process(ctx, pid)["steps"]
    needed = packages_needed(steps, ctx.appliance.plugins.step_types)
    rows = []
    for step, package_id in needed:
        try:
            query = PackageListQuery(id=package_id, take=VERSIONS_SHOWN)
            versions = [item["version"] for item in list_packages(ctx, query)["items"]]
        except Forbidden:
            versions = []
        rows.append({"step": step, "package": package_id, "versions": versions})
    return rows


async def _form(
    portal: Portal, request: Request, ctx: RequestContext, retry: Retry | None = None
) -> Response:
    def read() -> dict[str, Any]:
        data = _project(ctx, request.path_params["ref"])
        ctx.require(Permission.DEPLOYMENT_CREATE, project=data["pid"])
        return {**data, "needed": _needed(ctx, data["pid"])}

    data = await portal.run(read)
    return render_form(portal, request, ctx, "projects/release_new.html", data, *(retry or ()))


@signed_in
async def new(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /projects/{ref}/releases/new``."""
    return await _form(portal, request, ctx)


def _release_field(field: str) -> str | None:
    if field.startswith("packages"):
        return "packages"
    return field if field in ("version", "notes") else None


@signed_in_post
async def create(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /projects/{ref}/releases``: then the new release's page."""
    ref = request.path_params["ref"]
    typed = {k: v for k, v in form.items() if k != "csrf_token"}

    def write() -> dict[str, Any]:
        pid = get_project(ctx, ref)["id"]
        packages = [
            {"package": row["package"], "version": version, "step": row["step"]}
            for index, row in enumerate(_needed(ctx, pid))
            if (version := form.get(f"{PACKAGE}{index}", "").strip())
        ]
        body: dict[str, Any] = {"notes": form.get("notes", ""), "packages": packages}
        if form.get("version", "").strip():
            body["version"] = form["version"].strip()
        made: dict[str, Any] = create_release(ctx, pid, checked(ReleaseIn, body))
        return made

    made, errors = await attempt(ctx, write, _release_field, conflict="version")
    if errors is not None:
        return await _form(portal, request, ctx, (typed, errors))
    return redirect(f"/projects/{made['project_id']}/releases/{made['version']}")


def deploy_buttons(ctx: RequestContext, release: dict[str, Any]) -> list[dict[str, Any]]:
    """Per environment of the lifecycle: the API's verdict, and whether this user may deploy
    there at all (no button without ``deployment.create`` in that environment); "Deploy" in
    the first phase, "Promote" after it."""
    rows = []
    first_phase = release["environments"][0]["phase"] if release["environments"] else None
    for env in release["environments"]:
        allowed = ctx.user.can(
            Permission.DEPLOYMENT_CREATE,
            project=release["project_id"],
            environment=env["environment_id"],
        )
        verb = "Deploy" if env["phase"] == first_phase else "Promote"
        rows.append({**env, "may": allowed, "verb": verb})
    return rows


@signed_in
async def show(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /projects/{ref}/releases/{version}``: the snapshot and the deploy buttons."""
    return await _release_page(portal, request, ctx)


async def _release_page(
    portal: Portal,
    request: Request,
    ctx: RequestContext,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    def read() -> dict[str, Any]:
        data = _project(ctx, request.path_params["ref"])
        release = get_project_release(ctx, data["pid"], request.path_params["version"])
        return {**data, "release": release, "targets": deploy_buttons(ctx, release)}

    context = {**await portal.run(read), "problems": problems or []}
    return portal.render(request, ctx, "projects/release.html", context, status)


@signed_in_post
async def deploy(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST .../releases/{version}/deploy`` (``environment``): the task page after."""

    def write() -> dict[str, Any]:
        pid = get_project(ctx, request.path_params["ref"])["id"]
        release = get_project_release(ctx, pid, request.path_params["version"])
        body = {"release": release["id"], "environment": form.get("environment", "")}
        made: dict[str, Any] = create_deployment(ctx, checked(DeploymentIn, body))
        return made

    made, errors = await attempt(ctx, write, lambda field: None)
    if errors is not None:
        return await _release_page(portal, request, ctx, errors.problems, errors.status_code)
    return redirect(f"/tasks/{made['task_id']}")
