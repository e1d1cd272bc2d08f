"""``/api/v1/projects``: what gets deployed; each holds a process and variables.

A project names its ``lifecycle`` (id or name; ``null``: the default lifecycle, one phase per
environment in sort order) and the ``library_sets`` it includes (ids or names, in precedence
order); both are stored in ``ProjectSettings`` and shown as ids.

Permissions are project-scoped: a grant limited to some projects sees and edits only those,
and creating a project needs an unscoped ``project.edit`` (the new project is in no grant yet).
The list is one count and one page query, whatever the number of projects.
"""

from __future__ import annotations

from typing import Any

import peewee
from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import (
    get_or_404,
    name_filter,
    paginate,
    require_unique_name,
    resolve_many,
)
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import (
    NAME_PATTERN,
    Body,
    Deleted,
    Line,
    ListQuery,
    Out,
    Page,
    Text,
    name_field,
)
from octo_appliance.db import LibraryVariableSet, Lifecycle, Project, ProjectSettings, Variable
from octo_appliance.db.base import fk_id, iso
from octo_appliance.security.permissions import Permission

router = Router("projects")


MAX_LIBRARY_SETS = 100
_LIFECYCLE_HELP = "Id or name; null: the default lifecycle (one phase per environment)."
_SETS_HELP = "Library variable sets to include (ids or names), in precedence order."


class ProjectCreate(Body):
    name: str = name_field()
    description: Text = Field("", max_length=10_000)
    lifecycle: str | None = Field(
        None, min_length=1, pattern=NAME_PATTERN, max_length=200, description=_LIFECYCLE_HELP
    )
    library_sets: list[Line] = Field(
        default_factory=list, max_length=MAX_LIBRARY_SETS, description=_SETS_HELP
    )


class ProjectUpdate(Body):
    name: str | None = name_field(None)
    description: Text | None = Field(None, max_length=10_000)
    lifecycle: str | None = Field(
        None, min_length=1, pattern=NAME_PATTERN, max_length=200, description=_LIFECYCLE_HELP
    )
    library_sets: list[Line] | None = Field(
        None, max_length=MAX_LIBRARY_SETS, description=_SETS_HELP
    )


class ProjectOut(Out):
    id: str
    name: str
    description: str
    created_at: str
    lifecycle: str | None
    library_sets: list[str]


def to_json(
    project: Any, lifecycle: str | None = None, library_sets: list[str] | None = None
) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "created_at": iso(project.created_at),
        "lifecycle": lifecycle,
        "library_sets": list(library_sets or []),
    }


def _row_json(row: Any) -> dict[str, Any]:
    return to_json(row, row.lifecycle_ref, row.library_set_ids)


def project_json(project: Project) -> dict[str, Any]:
    settings = ProjectSettings.get_or_none(ProjectSettings.project == project.id)
    if settings is None:
        return to_json(project)
    return to_json(project, fk_id(settings, "lifecycle"), settings.library_sets)


def _settings_changes(body: ProjectCreate | ProjectUpdate) -> dict[str, Any]:
    """The settings the body sets, resolved to ids (422 naming unknown references)."""
    changes: dict[str, Any] = {}
    if "lifecycle" in body.model_fields_set:
        changes["lifecycle"] = None
        if body.lifecycle is not None:
            changes["lifecycle"] = resolve_many(
                Lifecycle, [body.lifecycle], "lifecycle", "lifecycle"
            )[0].id
    if body.library_sets is not None and "library_sets" in body.model_fields_set:
        sets = resolve_many(
            LibraryVariableSet, body.library_sets, "library variable set", "library_sets"
        )
        changes["library_sets"] = [row.id for row in sets]
    return changes


def _save_settings(project: Project, changes: dict[str, Any]) -> None:
    if not changes:
        return
    settings = ProjectSettings.get_or_none(ProjectSettings.project == project.id)
    if settings is None:
        ProjectSettings.create_new(project=project.id, **changes)
        return
    settings.save_changes(changes)


@router.get(
    "/projects", summary="List projects", query=ListQuery, response=Page[ProjectOut], cache=True
)
def list_projects(ctx: RequestContext, query: ListQuery) -> dict[str, Any]:
    """Only the projects the caller may view."""
    ctx.require(Permission.PROJECT_VIEW)
    rows = name_filter(
        Project.select(
            Project,
            ProjectSettings.lifecycle.alias("lifecycle_ref"),
            ProjectSettings.library_sets.alias("library_set_ids"),
        ).join(ProjectSettings, peewee.JOIN.LEFT_OUTER, on=(ProjectSettings.project == Project.id)),
        Project.name,
        query.name,
    )
    rows = ctx.only_visible(rows, Permission.PROJECT_VIEW, "projects", Project.id)
    return paginate(rows, query, _row_json, Project.name, plain_rows=True)


@router.create("/projects", "Create a project", ProjectCreate, ProjectOut)
def create_project(ctx: RequestContext, body: ProjectCreate) -> dict[str, Any]:
    """Needs ``project.edit`` through a grant limited to no project or environment."""
    ctx.require_unscoped(Permission.PROJECT_EDIT)
    require_unique_name(Project, body.name, "project")
    settings = _settings_changes(body)
    project = Project.create_new(name=body.name, description=body.description)
    _save_settings(project, settings)
    ctx.audit(
        "create",
        "project",
        project.id,
        project.name,
        {"name": body.name, "description": body.description, **settings},
    )
    return project_json(project)


@router.get("/projects/{ref}", summary="Get a project", response=ProjectOut, cache=True)
def get_project(ctx: RequestContext, ref: str) -> dict[str, Any]:
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_VIEW, project=project.id)
    return project_json(project)


@router.update(
    "/projects/{ref}",
    "Update a project (fields left out keep their value; lifecycle null: the default)",
    ProjectUpdate,
    ProjectOut,
)
def update_project(ctx: RequestContext, ref: str, body: ProjectUpdate) -> dict[str, Any]:
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_EDIT, project=project.id)
    changes = body.model_dump(
        exclude_unset=True, exclude_none=True, exclude={"lifecycle", "library_sets"}
    )
    if "name" in changes:
        require_unique_name(Project, changes["name"], "project", exclude=project.id)
    settings = _settings_changes(body)
    project.save_changes(changes)
    _save_settings(project, settings)
    ctx.audit("update", "project", project.id, project.name, {**changes, **settings})
    return project_json(project)


@router.delete("/projects/{ref}", summary="Delete a project and its variables", response=Deleted)
def delete_project(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Its variables go with it (sealed values included), as do its settings, process,
    releases and deployment records."""
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_EDIT, project=project.id)
    removed = Variable.delete().where(Variable.project == project.id).execute()
    project.delete_instance()
    ctx.audit("delete", "project", project.id, project.name, {"variables_deleted": removed})
    return {"id": project.id, "deleted": True}
