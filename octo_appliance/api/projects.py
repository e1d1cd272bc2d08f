"""``/api/v1/projects``: what gets deployed; each holds a process and variables.

Permissions are project-scoped: a grant limited to some projects sees and edits only those,
and creating a project needs an unscoped ``project.edit`` (the new project is in no grant yet).
The list is one count and one page query, whatever the number of projects.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404, name_filter, paginate
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Body, Deleted, ListQuery, Out, Page, name_field
from octo_appliance.db import Project, Variable
from octo_appliance.db.base import iso
from octo_appliance.exceptions import Conflict
from octo_appliance.security.permissions import Permission

router = Router("projects")


class ProjectCreate(Body):
    name: str = name_field()
    description: str = Field("", max_length=10_000)


class ProjectUpdate(Body):
    name: str | None = name_field(None)
    description: str | None = Field(None, max_length=10_000)


class ProjectOut(Out):
    id: str
    name: str
    description: str
    created_at: str


def to_json(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "created_at": iso(project.created_at),
    }


def _check_unique(name: str, exclude: str | None = None) -> None:
    query = Project.select(Project.id).where(Project.name == name)
    if exclude:
        query = query.where(Project.id != exclude)
    if query.exists():
        raise Conflict(f"a project named '{name}' already exists", hint="choose another name")


@router.get("/projects", summary="List projects", query=ListQuery, response=Page[ProjectOut])
def list_projects(ctx: RequestContext, query: ListQuery) -> dict[str, Any]:
    """Only the projects the caller may view."""
    ctx.require(Permission.PROJECT_VIEW)
    rows = name_filter(Project.select(), Project.name, query.name)
    visible = ctx.user.visible(Permission.PROJECT_VIEW, "projects")
    if visible is not None:
        rows = rows.where(Project.id.in_(list(visible)))
    return paginate(rows, query, to_json, Project.name, plain_rows=True)


@router.post(
    "/projects",
    summary="Create a project",
    body=ProjectCreate,
    response=ProjectOut,
    status_code=201,
    errors=(409,),
)
def create_project(ctx: RequestContext, body: ProjectCreate) -> dict[str, Any]:
    """Needs ``project.edit`` through a grant limited to no project or environment."""
    ctx.require_unscoped(Permission.PROJECT_EDIT)
    _check_unique(body.name)
    project = Project.create_new(**body.model_dump())
    ctx.audit("create", "project", project.id, project.name, body.model_dump())
    return to_json(project)


@router.get("/projects/{ref}", summary="Get a project", response=ProjectOut)
def get_project(ctx: RequestContext, ref: str) -> dict[str, Any]:
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_VIEW, project=project.id)
    return to_json(project)


@router.put(
    "/projects/{ref}",
    summary="Update a project (fields left out keep their value)",
    body=ProjectUpdate,
    response=ProjectOut,
    errors=(409,),
)
def update_project(ctx: RequestContext, ref: str, body: ProjectUpdate) -> dict[str, Any]:
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_EDIT, project=project.id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "name" in changes:
        _check_unique(changes["name"], exclude=project.id)
    for key, value in changes.items():
        setattr(project, key, value)
    project.save()
    ctx.audit("update", "project", project.id, project.name, changes)
    return to_json(project)


@router.delete("/projects/{ref}", summary="Delete a project and its variables", response=Deleted)
def delete_project(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Its variables go with it (sealed values included)."""
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_EDIT, project=project.id)
    removed = Variable.delete().where(Variable.project == project.id).execute()
    project.delete_instance()
    ctx.audit("delete", "project", project.id, project.name, {"variables_deleted": removed})
    return {"id": project.id, "deleted": True}
