"""``/api/v1/library-variable-sets``: variables shared by every project that includes the set.

A set is created, renamed and deleted here; its variables are read and replaced as one list at
``/library-variable-sets/{ref}/variables`` with exactly the rules of project variables (see
:mod:`octo_appliance.api.variable_lists`). Projects include sets through their
``library_sets`` field; a set still included by a project cannot be deleted (409).

Sets are not limited to a project, so they follow the variable permissions without a scope:
reading needs ``variable.view`` (any scope), changing a set or its variables an unscoped
``variable.edit``, because one change reaches every project that includes the set.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404, name_filter, paginate, require_unique_name
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Body, Deleted, Line, ListQuery, Out, Text, name_field
from octo_appliance.api.variable_lists import (
    MAX_VARIABLES,
    VariableIn,
    VariableList,
    VariableOut,
    check_owner_field,
)
from octo_appliance.db import LibraryVariable, LibraryVariableSet, Project, ProjectSettings
from octo_appliance.db.base import iso, tuples
from octo_appliance.exceptions import Conflict
from octo_appliance.security.permissions import Permission

router = Router("library-variable-sets")

KIND = "library variable set"


class LibrarySetIn(Body):
    name: str = name_field()
    description: Text = Field("", max_length=10_000)


class LibrarySetUpdate(Body):
    name: str | None = name_field(None)
    description: Text | None = Field(None, max_length=10_000)


class LibrarySetOut(Out):
    id: str
    name: str
    description: str
    created_at: str


class LibraryVariablesIn(Body):
    library_set_id: Line | None = Field(
        None, max_length=40, description="Optional; if given it must be this set's id."
    )
    variables: list[VariableIn] = Field(max_length=MAX_VARIABLES)


class LibraryVariablesOut(Out):
    library_set_id: str
    variables: list[VariableOut]


def to_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "created_at": iso(row.created_at),
    }


def set_variables(library_set: LibraryVariableSet) -> VariableList:
    return VariableList(LibraryVariable, "library_set", library_set.id, "this library set")


def including_projects(set_id: str) -> list[str]:
    """Names of the projects that include the set (ids are random, so a text match is exact
    enough to narrow the rows; the JSON is checked after)."""
    query = (
        ProjectSettings.select(ProjectSettings.library_sets, Project.name)
        .join(Project, on=(ProjectSettings.project == Project.id))
        .where(ProjectSettings.library_sets.contains(set_id))
    )
    return sorted(name for sets, name in tuples(query) if set_id in (sets or []))


@router.listing("/library-variable-sets", "List library variable sets", LibrarySetOut)
def list_library_sets(ctx: RequestContext, query: ListQuery) -> dict[str, Any]:
    ctx.require(Permission.VARIABLE_VIEW)
    rows = name_filter(LibraryVariableSet.select(), LibraryVariableSet.name, query.name)
    return paginate(rows, query, to_json, LibraryVariableSet.name, plain_rows=True)


@router.create(
    "/library-variable-sets", "Create a library variable set", LibrarySetIn, LibrarySetOut
)
def create_library_set(ctx: RequestContext, body: LibrarySetIn) -> dict[str, Any]:
    ctx.require_unscoped(Permission.VARIABLE_EDIT)
    require_unique_name(LibraryVariableSet, body.name, KIND)
    row = LibraryVariableSet.create_new(**body.model_dump())
    ctx.audit("create", "library-variable-set", row.id, row.name, body.model_dump())
    return to_json(row)


@router.get(
    "/library-variable-sets/{ref}", summary="Get a library variable set", response=LibrarySetOut
)
def get_library_set(ctx: RequestContext, ref: str) -> dict[str, Any]:
    ctx.require(Permission.VARIABLE_VIEW)
    return to_json(get_or_404(LibraryVariableSet, ref, KIND))


@router.update(
    "/library-variable-sets/{ref}",
    "Update a library variable set (fields left out keep their value)",
    LibrarySetUpdate,
    LibrarySetOut,
)
def update_library_set(ctx: RequestContext, ref: str, body: LibrarySetUpdate) -> dict[str, Any]:
    row = get_or_404(LibraryVariableSet, ref, KIND)
    ctx.require_unscoped(Permission.VARIABLE_EDIT)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "name" in changes:
        require_unique_name(LibraryVariableSet, changes["name"], KIND, exclude=row.id)
    row.save_changes(changes)
    ctx.audit("update", "library-variable-set", row.id, row.name, changes)
    return to_json(row)


@router.delete(
    "/library-variable-sets/{ref}",
    summary="Delete a library variable set and its variables",
    response=Deleted,
    errors=(409,),
)
def delete_library_set(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Refused (409) while a project includes it. Releases keep their own copy."""
    row = get_or_404(LibraryVariableSet, ref, KIND)
    ctx.require_unscoped(Permission.VARIABLE_EDIT)
    projects = including_projects(row.id)
    if projects:
        raise Conflict(
            f"{KIND} '{row.name}' is included by project(s): {', '.join(projects[:20])}",
            hint="remove it from those projects' library_sets first",
        )
    removed = LibraryVariable.delete().where(LibraryVariable.library_set == row.id).execute()
    row.delete_instance()
    ctx.audit("delete", "library-variable-set", row.id, row.name, {"variables_deleted": removed})
    return {"id": row.id, "deleted": True}


@router.get(
    "/library-variable-sets/{ref}/variables",
    summary="Get a library set's variables (sensitive values are never returned)",
    response=LibraryVariablesOut,
)
def get_library_variables(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Sensitive variables read as ``"value": null, "has_value": true``."""
    row = get_or_404(LibraryVariableSet, ref, KIND)
    ctx.require(Permission.VARIABLE_VIEW)
    return {"library_set_id": row.id, "variables": set_variables(row).as_json()}


@router.put(
    "/library-variable-sets/{ref}/variables",
    summary="Replace a library set's variables",
    body=LibraryVariablesIn,
    response=LibraryVariablesOut,
    errors=(422,),
)
def put_library_variables(
    ctx: RequestContext, ref: str, body: LibraryVariablesIn
) -> dict[str, Any]:
    """Same body and rules as ``PUT /projects/{ref}/variables``: a GET answer is a valid body;
    sensitive values are sealed and never returned; ids are kept."""
    row = get_or_404(LibraryVariableSet, ref, KIND)
    ctx.require_unscoped(Permission.VARIABLE_EDIT)
    check_owner_field(body.library_set_id, row.id, "library_set_id", KIND)
    variables = set_variables(row)
    details = variables.replace(ctx, body.variables)
    ctx.audit("update", "library-variables", row.id, row.name, details)
    return {"library_set_id": row.id, "variables": variables.as_json()}
