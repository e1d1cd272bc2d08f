"""The variables editor, for a project's variables and a library set's alike.

Both owners read and replace their list through the API's own handlers (``get_variables``/
``put_variables``, ``get_library_variables``/``put_library_variables``), so permissions,
scope references and sealed sensitive values follow the API's rules. A project's page also
lists the library sets it includes, changed through ``update_project``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.library_sets import (
    LibraryVariablesIn,
    get_library_set,
    get_library_variables,
    list_library_sets,
    put_library_variables,
)
from octo_appliance.api.process import get_process
from octo_appliance.api.projects import ProjectUpdate, get_project, update_project
from octo_appliance.api.schemas import ListQuery
from octo_appliance.api.variables import VariableSetIn, get_variables, put_variables
from octo_appliance.db import Target
from octo_appliance.db.base import tuples
from octo_appliance.exceptions import NotFound
from octo_appliance.portal import variable_form
from octo_appliance.portal.forms import Refused, attempt, checked, posted, redirect, render_form
from octo_appliance.portal.process import environments
from octo_appliance.portal.projects import project_nav
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

SET_PREFIX = "set."


def _target_names(variables: list[dict[str, Any]]) -> dict[str, str]:
    """Names of the targets the scopes name (stored as ids), in one query."""
    ids = sorted({t for v in variables for t in v["scope"]["targets"]})
    if not ids:
        return {}
    return dict(tuples(Target.select(Target.id, Target.name).where(Target.id.in_(ids))))


@dataclass(frozen=True)
class Owner:
    """Whose variables: a project (``/projects/{ref}``) or a library set."""

    kind: str

    def read(self, ctx: RequestContext, ref: str) -> dict[str, Any]:
        if self.kind == "project":
            project = get_project(ctx, ref)
            pid = project["id"]
            variables = get_variables(ctx, pid)["variables"]
            sets = list_library_sets(ctx, ListQuery(take=1000))["items"]
            data = {
                **project_nav(project, f"/projects/{pid}/variables"),
                "owner": project,
                "base": f"/projects/{pid}",
                "home": f"/projects/{pid}/variables",
                "can_edit": ctx.user.can(Permission.VARIABLE_EDIT, project=pid),
                "can_include": ctx.user.can(Permission.PROJECT_EDIT, project=pid),
                "library_sets": sets,
                "step_names": [step["name"] for step in get_process(ctx, pid)["steps"]],
            }
        else:
            library_set = get_library_set(ctx, ref)
            variables = get_library_variables(ctx, library_set["id"])["variables"]
            data = {
                "owner": library_set,
                "base": f"/library-sets/{library_set['id']}",
                "home": f"/library-sets/{library_set['id']}",
                "current": "/library-sets",
                "can_edit": ctx.user.can_unscoped(Permission.VARIABLE_EDIT),
                "step_names": [],
            }
        envs = environments(ctx)
        return {
            **data,
            "kind": self.kind,
            "variables": variables,
            "environments": envs,
            "env_names": {env["id"]: env["name"] for env in envs},
            "target_names": _target_names(variables),
        }

    def write(self, ctx: RequestContext, owner_id: str, items: list[dict[str, Any]]) -> Any:
        if self.kind == "project":
            return put_variables(ctx, owner_id, checked(VariableSetIn, {"variables": items}))
        body = checked(LibraryVariablesIn, {"variables": items})
        return put_library_variables(ctx, owner_id, body)


class VariablePages:
    """The views of one owner kind's variables editor."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner

    async def _data(self, portal: Portal, ctx: RequestContext, request: Request) -> Any:
        return await portal.run(lambda: self.owner.read(ctx, request.path_params["ref"]))

    def _page(
        self,
        portal: Portal,
        request: Request,
        ctx: RequestContext,
        data: dict[str, Any],
        template: str,
        values: dict[str, str] | None = None,
        errors: Refused | None = None,
        editing: dict[str, Any] | None = None,
    ) -> Response:
        values = values or {}
        chosen = [k[len(variable_form.ENV) :] for k in values if k.startswith("env.")]
        page = {**data, "values": values, "chosen_envs": chosen, "editing": editing}
        return render_form(portal, request, ctx, template, page, errors=errors)

    async def show(self, portal: Portal, request: Request) -> Response:
        """``GET .../variables``: the list, the add forms (and a project's library sets)."""
        ctx = await portal.signed_in(request)
        if ctx is None:
            return portal.sign_in_first(request)
        data = await self._data(portal, ctx, request)
        values = {"sensitive": "1"} if request.query_params.get("sensitive") == "1" else {}
        return self._page(portal, request, ctx, data, "projects/variables.html", values)

    def _find(self, data: dict[str, Any], request: Request) -> tuple[int, dict[str, Any]]:
        wanted = request.path_params["variable"]
        for index, variable in enumerate(data["variables"]):
            if variable["id"] == wanted:
                return index, variable
        raise NotFound(f"no variable '{wanted}' here", hint="the variables page lists them")

    async def edit(self, portal: Portal, request: Request) -> Response:
        """``GET .../variables/{variable}``: one variable's form (read-only to a viewer)."""
        ctx = await portal.signed_in(request)
        if ctx is None:
            return portal.sign_in_first(request)
        data = await self._data(portal, ctx, request)
        _, variable = self._find(data, request)
        values = variable_form.form_values(variable)
        return self._page(
            portal, request, ctx, data, "projects/variable.html", values, editing=variable
        )

    async def save(self, portal: Portal, request: Request) -> Response:
        """``POST .../variables`` (add) or ``.../variables/{variable}`` (replace one)."""
        ctx, form = await posted(portal, request)
        if ctx is None:
            return portal.sign_in_first(request)
        data = await self._data(portal, ctx, request)
        items = [variable_form.body_item(v) for v in data["variables"]]
        editing = None
        index = len(items)
        if "variable" in request.path_params:
            index, editing = self._find(data, request)
        env_ids = [env["id"] for env in data["environments"]]
        items[index : index + 1] = [variable_form.parse(form, env_ids, editing)]
        owner_id = data["owner"]["id"]
        _, errors = await attempt(
            ctx, lambda: self.owner.write(ctx, owner_id, items), variable_form.place(index)
        )
        if errors is None:
            return redirect(data["home"])
        typed = variable_form.typed_values(form)
        template = "projects/variable.html" if editing else "projects/variables.html"
        return self._page(portal, request, ctx, data, template, typed, errors, editing)

    async def delete(self, portal: Portal, request: Request) -> Response:
        """``POST .../variables/{variable}/delete``."""
        ctx, _ = await posted(portal, request)
        if ctx is None:
            return portal.sign_in_first(request)
        data = await self._data(portal, ctx, request)
        index, _ = self._find(data, request)
        items = [variable_form.body_item(v) for i, v in enumerate(data["variables"]) if i != index]
        owner_id = data["owner"]["id"]
        _, errors = await attempt(
            ctx, lambda: self.owner.write(ctx, owner_id, items), lambda field: None
        )
        if errors is None:
            return redirect(data["home"])
        return self._page(portal, request, ctx, data, "projects/variables.html", errors=errors)

    async def include(self, portal: Portal, request: Request) -> Response:
        """``POST /projects/{ref}/library-sets``: the library sets the project includes."""
        ctx, form = await posted(portal, request)
        if ctx is None:
            return portal.sign_in_first(request)
        data = await self._data(portal, ctx, request)
        chosen = [s["id"] for s in data["library_sets"] if form.get(SET_PREFIX + s["id"])]
        chosen_set = set(chosen)
        # keep the stored precedence order, new ones after it
        ordered = [s for s in data["owner"]["library_sets"] if s in chosen_set]
        ordered += [s for s in chosen if s not in ordered]
        pid = data["owner"]["id"]
        _, errors = await attempt(
            ctx,
            lambda: update_project(ctx, pid, checked(ProjectUpdate, {"library_sets": ordered})),
            lambda field: "library_sets" if field.startswith("library_sets") else None,
        )
        if errors is None:
            return redirect(data["home"] + "#library-sets")
        return self._page(portal, request, ctx, data, "projects/variables.html", errors=errors)


PROJECT = VariablePages(Owner("project"))
LIBRARY = VariablePages(Owner("library"))
