"""``/api/v1/projects/{ref}/variables``: a project's variables, read and replaced as one list.

Shape: ``PUT`` takes ``{"variables": [{"id"?, "name", "value", "sensitive", "scope"}]}`` and
both verbs answer ``{"project_id", "variables": [...]}`` in the order given; a GET answer can
be sent back as a PUT body as it is (``project_id`` and ``has_value`` are accepted). ``scope`` is
``{"environments": [...], "roles": [...], "targets": [...], "steps": [...]}``.

The rules (sealed sensitive values, id-preserving round trips, scope references) are shared
with library variable sets and described in :mod:`octo_appliance.api.variable_lists`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Body, Line, Out
from octo_appliance.api.variable_lists import (
    MAX_VARIABLES,
    VariableIn,
    VariableList,
    VariableOut,
    check_owner_field,
)
from octo_appliance.db import Project, Variable
from octo_appliance.security.permissions import Permission

router = Router("variables")


class VariableSetIn(Body):
    project_id: Line | None = Field(
        None, max_length=40, description="Optional; if given it must be this project's id."
    )
    variables: list[VariableIn] = Field(max_length=MAX_VARIABLES)


class VariableSetOut(Out):
    project_id: str
    variables: list[VariableOut]


def project_variables(project: Project) -> VariableList:
    return VariableList(Variable, "project", project.id, "this project")


@router.get(
    "/projects/{ref}/variables",
    summary="Get a project's variables (sensitive values are never returned)",
    response=VariableSetOut,
)
def get_variables(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Sensitive variables read as ``"value": null, "has_value": true``."""
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.VARIABLE_VIEW, project=project.id)
    return {"project_id": project.id, "variables": project_variables(project).as_json()}


@router.put(
    "/projects/{ref}/variables",
    summary="Replace a project's variables",
    body=VariableSetIn,
    response=VariableSetOut,
    errors=(422,),
)
def put_variables(ctx: RequestContext, ref: str, body: VariableSetIn) -> dict[str, Any]:
    """The list replaces the stored one, in the order given.

    Send ``{"variables": [{"id"?, "name", "value", "sensitive", "scope"}]}``; a GET answer is
    a valid body. Give ``id`` to keep a stored variable's id. Sensitive values are sealed and
    never returned; a sensitive variable with ``"value": null`` and the ``id`` of a stored
    sensitive variable keeps its sealed value. Scope environments and targets take ids or names
    and are stored as ids; roles and steps are names. Two variables with the same name
    (case-insensitive) and the same scope are a 422, as are unknown ids and references; every
    problem is listed in ``details``.
    """
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.VARIABLE_EDIT, project=project.id)
    check_owner_field(body.project_id, project.id, "project_id", "project")
    variables = project_variables(project)
    details = variables.replace(ctx, body.variables)
    ctx.audit("update", "variables", project.id, project.name, details)
    return {"project_id": project.id, "variables": variables.as_json()}
