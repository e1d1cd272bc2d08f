"""Teams: the list with members and grants, a create form, and one team's members and grants.

A grant is a role, optionally limited to some environments and projects (empty: all), as the
API models it (``api/teams.py``). The team form lists one row per grant plus an empty row to
add one; a row whose role is left empty is removed. Members and scopes are typed as names
separated by commas, which the API resolves (an unknown name is an error next to its row).
The API's rules hold: the built-in Administrators team keeps its name, a member and an
unlimited administrator grant, and some active user stays an administrator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.environments import list_environments
from octo_appliance.api.projects import list_projects
from octo_appliance.api.schemas import ListQuery
from octo_appliance.api.teams import (
    TeamIn,
    TeamUpdate,
    create_team,
    delete_team,
    get_team,
    list_roles,
    list_teams,
    update_team,
)
from octo_appliance.exceptions import ApiError
from octo_appliance.portal.forms import (
    PROBLEM,
    Again,
    above_form,
    field_errors,
    lines,
    redirect,
    refusal_errors,
    save,
    submit,
    validate,
)
from octo_appliance.portal.session import Form, signed_in, signed_in_post
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

M = TypeVar("M", bound=BaseModel)

FIELDS = ("name", "description", "members", "roles")
#: a team form has at most this many grant rows (the form's field limit allows no more)
MAX_GRANT_ROWS = 12
GRANT_PARTS = ("role", "environments", "projects")


def grant_rows(form: dict[str, str]) -> list[dict[str, str]]:
    """The form's grant rows as typed (``grant-N-role``, ``-environments``, ``-projects``)."""
    rows = []
    for n in range(MAX_GRANT_ROWS):
        row = {part: form.get(f"grant-{n}-{part}", "").strip() for part in GRANT_PARTS}
        rows.append(row)
    while rows and not any(rows[-1].values()):
        rows.pop()
    return rows


def _body(typed: dict[str, Any]) -> dict[str, Any]:
    """What the team form means, as the API's body; rows without a role are dropped."""
    kept = [row for row in typed["grants"] if row["role"]]
    typed["kept"] = kept
    return {
        "name": typed["name"],
        "description": typed["description"],
        "members": lines(typed["members"]),
        "roles": [
            {
                "role": row["role"],
                "environments": lines(row["environments"]),
                "projects": lines(row["projects"]),
            }
            for row in kept
        ],
    }


def _errors(raw: dict[str, str], details: Any, typed: dict[str, Any]) -> dict[str, str]:
    """Errors on ``roles.N...`` go next to the grant row they concern (its index in the form)."""
    errors = {k: v for k, v in raw.items() if k != "roles"}
    kept: list[dict[str, str]] = typed.get("kept", [])
    for detail in details if isinstance(details, list) else []:
        parts = str(detail.get("field") or "").split(".")
        if parts[0] == "roles" and len(parts) > 1 and parts[1].isdigit() and kept:
            index = typed["grants"].index(kept[min(int(parts[1]), len(kept) - 1)])
            part = parts[2] if len(parts) > 2 and parts[2] in GRANT_PARTS else "role"
            message = str(detail.get("message", "")).removeprefix("Value error, ")
            errors.setdefault(f"grant-{index}-{part}", message[:1].upper() + message[1:])
    if "roles" in raw and not any(k.startswith("grant-") for k in errors):
        errors[PROBLEM] = raw["roles"]
    return errors


def _parsed(model: type[M], typed: dict[str, Any]) -> tuple[M | None, dict[str, str]]:
    """The team form as ``model``: (the body, {}) or (None, errors by field and grant row)."""
    body, details = validate(model, _body(typed))
    return body, _errors(field_errors(details, FIELDS), details, typed)


def _refusal(typed: dict[str, Any]) -> Callable[[ApiError], dict[str, str]]:
    """The API's refusal of this form, errors on a grant next to its row."""
    return lambda exc: _errors(refusal_errors(exc, FIELDS, "name"), exc.details, typed)


def _typed(form: dict[str, str]) -> dict[str, Any]:
    typed: dict[str, Any] = {key: form.get(key, "").strip() for key in FIELDS[:3]}
    typed["grants"] = grant_rows(form)
    return typed


def _from_team(team: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A team as its form shows it: names where people type names."""

    def named(ids: list[str]) -> str:
        return ", ".join(names.get(i, i) for i in ids)

    return {
        "name": team["name"],
        "description": team["description"],
        "members": ", ".join(m["username"] for m in team["members"]),
        "grants": [
            {
                "role": g["role"],
                "environments": named(g["environments"]),
                "projects": named(g["projects"]),
            }
            for g in team["roles"]
        ],
    }


def named_grants(team: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    """A team's grants with environment and project names for ids (an id stays if unknown)."""
    return [
        {
            "role": g["role"],
            "environments": [names.get(i, i) for i in g["environments"]],
            "projects": [names.get(i, i) for i in g["projects"]],
        }
        for g in team["roles"]
    ]


def _shared(ctx: RequestContext, names: dict[str, str], teams: list[dict[str, Any]]) -> Any:
    """What the team pages share: the roles to pick from, and every team's grants by name."""
    roles = list_roles(ctx)["items"]
    for team in teams:
        team["grants"] = named_grants(team, names)
    options = [("", "none"), *((role["name"], role["name"]) for role in roles)]
    return {"roles": roles, "role_options": options}


def _names(ctx: RequestContext) -> dict[str, str]:
    """Environment and project names by id, to show scopes as people typed them."""
    everything = ListQuery(take=1000)
    envs, projects = [], []
    if ctx.user.can(Permission.ENVIRONMENT_VIEW):
        envs = list_environments(ctx, everything)["items"]
    if ctx.user.can(Permission.PROJECT_VIEW):
        projects = list_projects(ctx, everything)["items"]
    return {row["id"]: row["name"] for row in [*envs, *projects]}


async def _index(
    portal: Portal, request: Request, ctx: RequestContext, again: Again | None = None
) -> Response:
    """``GET /teams``; after a refused create, the form again with its errors."""
    again = again or Again({"name": "", "description": "", "members": "", "grants": []})

    def read() -> dict[str, Any]:
        teams = list_teams(ctx, ListQuery(take=1000))["items"]
        return {"teams": teams, **_shared(ctx, _names(ctx), teams)}

    data = await portal.run(read)
    context = {**data, "typed": again.typed, "errors": again.errors, "can_edit": _can_edit(ctx)}
    return portal.render(request, ctx, "admin/teams.html", context, again.status_code)


index = signed_in(_index)


def _can_edit(ctx: RequestContext) -> bool:
    return ctx.user.can_unscoped(Permission.TEAM_EDIT)


@signed_in_post
async def create(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /teams``: to the new team, or the form again with its errors."""
    typed = _typed(form)
    made, errors = await save(
        ctx, _parsed(TeamIn, typed), lambda body: create_team(ctx, body), _refusal(typed)
    )
    if not errors:
        return redirect(f"/teams/{made['id']}")
    return await _index(portal, request, ctx, Again(typed, errors, 422))


async def _show(
    portal: Portal, request: Request, ctx: RequestContext, again: Again | None = None
) -> Response:
    """``GET /teams/{id}`` (or a refused edit again)."""
    again = again or Again()
    ref = request.path_params["id"]

    def read() -> dict[str, Any]:
        team, names = get_team(ctx, ref), _names(ctx)
        return {"team": team, "names": names, **_shared(ctx, names, [team])}

    data = await portal.run(read)
    context = {
        **data,
        "typed": again.typed or _from_team(data["team"], data["names"]),
        "errors": again.errors,
        "can_edit": _can_edit(ctx),
    }
    return portal.render(request, ctx, "admin/team.html", context, again.status_code)


show = signed_in(_show)


@signed_in_post
async def update(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /teams/{id}``: name, description, members and grants, replaced as a whole."""
    ref = request.path_params["id"]
    typed = _typed(form)
    parsed = _parsed(TeamUpdate, typed)
    _, errors = await save(ctx, parsed, lambda body: update_team(ctx, ref, body), _refusal(typed))
    if not errors:
        return redirect(f"/teams/{ref}")
    return await _show(portal, request, ctx, Again(typed, errors, 422))


@signed_in_post
async def delete(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /teams/{id}/delete``."""
    ref = request.path_params["id"]
    _, errors = await submit(ctx, lambda: delete_team(ctx, ref), above_form)
    if errors:
        return await _show(portal, request, ctx, Again(None, errors, 409))
    return redirect("/teams")
