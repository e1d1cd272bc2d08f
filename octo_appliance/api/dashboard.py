"""``GET /api/v1/dashboard``: for each project and environment, the latest deployment.

The portal draws a grid: projects down, environments across, each cell the release most
recently deployed there and how that went. Everything is limited to what the caller may view
(``project.view``: projects and environments of their grants, cells whose project and
environment one grant covers). The latest deployment per cell comes from one windowed query,
whatever the number of projects and environments.
"""

from __future__ import annotations

from typing import Any

import peewee
from pydantic import BaseModel, ConfigDict, Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import name_filter
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Line, Out
from octo_appliance.db import Deployment, Environment, Project, Release
from octo_appliance.db.base import iso, tuples
from octo_appliance.db.tasks import ServerTask
from octo_appliance.engine.lifecycles import effective_state
from octo_appliance.security.permissions import Permission, grant_condition

router = Router("dashboard")


class DashboardProjectOut(Out):
    id: str
    name: str


class DashboardEnvironmentOut(Out):
    id: str
    name: str
    sort_order: int


class DashboardItemOut(Out):
    project_id: str
    environment_id: str
    release_id: str
    release_version: str
    deployment_id: str
    task_id: str
    state: str
    created_at: str | None
    finished_at: str | None


class DashboardQuery(BaseModel):
    """``?skip=&take=&name=``: a page of projects (all of them when ``take`` is left out)."""

    model_config = ConfigDict(extra="ignore")

    skip: int = Field(0, ge=0, le=1_000_000_000, description="Projects to skip.")
    take: int | None = Field(
        None, ge=1, le=1000, description="Projects to return (default: every one)."
    )
    name: Line | None = Field(
        None, max_length=200, description="Case-insensitive substring of the project name."
    )


class DashboardOut(Out):
    total: int = Field(description="Projects the caller may view that match ``name``.")
    projects: list[DashboardProjectOut]
    environments: list[DashboardEnvironmentOut]
    items: list[DashboardItemOut] = Field(description="The latest deployment per cell.")


def _latest(condition: Any) -> list[dict[str, Any]]:
    """The newest deployment of every (project, environment) pair ``condition`` admits."""
    rank = peewee.fn.ROW_NUMBER().over(
        partition_by=[Deployment.project, Deployment.environment],
        order_by=[Deployment.created_at.desc(), Deployment.id.desc()],
    )
    ranked = Deployment.select(Deployment.id, rank.alias("rank"))
    if condition is not None:
        ranked = ranked.where(condition)
    newest = ranked.alias("newest")
    query = (
        Deployment.select(
            Deployment.id,
            Deployment.project,
            Deployment.environment,
            Deployment.release,
            Deployment.task_id,
            Deployment.state,
            Deployment.created_at,
            Deployment.finished_at,
            Release.version,
            ServerTask.state,
            ServerTask.finished_at,
        )
        .join(newest, on=(newest.c.id == Deployment.id))
        .switch(Deployment)
        .join(Release, on=(Release.id == Deployment.release))
        .switch(Deployment)
        .join(ServerTask, peewee.JOIN.LEFT_OUTER, on=(ServerTask.id == Deployment.task_id))
        .where(newest.c.rank == 1)
    )
    items = []
    for row in tuples(query):
        dep_id, project, env, release, task_id, row_state, created, finished = row[:8]
        version, task_state, task_finished = row[8:]
        state = effective_state(row_state, task_state)
        items.append(
            {
                "project_id": project,
                "environment_id": env,
                "release_id": release,
                "release_version": version,
                "deployment_id": dep_id,
                "task_id": task_id,
                "state": state,
                "created_at": iso(created),
                "finished_at": iso(finished or (task_finished if state != row_state else None)),
            }
        )
    return items


@router.get(
    "/dashboard",
    summary="The latest deployment per project and environment",
    query=DashboardQuery,
    response=DashboardOut,
)
def get_dashboard(ctx: RequestContext, query: DashboardQuery | None = None) -> dict[str, Any]:
    """``projects`` (by name) and ``environments`` (in sort order) the caller may view, and
    ``items``: one per project and environment that has a deployment. With ``take``, a page of
    projects and only their cells (what a person can look at; the portal shows 50 rows)."""
    ctx.require(Permission.PROJECT_VIEW)
    query = query or DashboardQuery()
    projects = Project.select(Project.id, Project.name).order_by(Project.name)
    projects = ctx.only_visible(projects, Permission.PROJECT_VIEW, "projects", Project.id)
    projects = name_filter(projects, Project.name, query.name)
    paged = query.take is not None or query.skip > 0
    page = list(projects.offset(query.skip).limit(query.take).dicts())
    total = projects.count() if paged else len(page)
    environments = Environment.select(
        Environment.id, Environment.name, Environment.sort_order
    ).order_by(Environment.sort_order, Environment.name)
    environments = ctx.only_visible(
        environments, Permission.PROJECT_VIEW, "environments", Environment.id
    )
    condition = grant_condition(
        ctx.user, Permission.PROJECT_VIEW, Deployment.project, Deployment.environment
    )
    if paged or query.name:  # only the page's cells: the window runs over theirs alone
        on_page = Deployment.project.in_([p["id"] for p in page])
        condition = on_page if condition is None else (condition & on_page)
    return {
        "total": total,
        "projects": page,
        "environments": list(environments.dicts()),
        "items": _latest(condition),
    }


def project_cells(ctx: RequestContext, project_id: str) -> dict[str, Any]:
    """One project's row of the dashboard (the portal's project overview): the environments
    the caller may view and the latest deployment in each, with the same limits as above."""
    ctx.require(Permission.PROJECT_VIEW, project=project_id)
    environments = Environment.select(
        Environment.id, Environment.name, Environment.sort_order
    ).order_by(Environment.sort_order, Environment.name)
    environments = ctx.only_visible(
        environments, Permission.PROJECT_VIEW, "environments", Environment.id
    )
    condition = Deployment.project == project_id
    scoped = grant_condition(
        ctx.user, Permission.PROJECT_VIEW, Deployment.project, Deployment.environment
    )
    if scoped is not None:
        condition = condition & scoped
    return {"environments": list(environments.dicts()), "items": _latest(condition)}
