"""``/api/v1/projects/{ref}/variables``: a project's variables, read and replaced as one list.

Shape: ``PUT`` takes ``{"variables": [{"id"?, "name", "value", "sensitive", "scope"}]}`` and
both verbs answer ``{"project_id", "variables": [...]}`` in the order given; a GET answer can
be sent back as a PUT body as it is (``project_id`` and ``has_value`` are accepted). ``scope`` is
``{"environments": [...], "roles": [...], "targets": [...]}``; environments and targets are
given by id or name and stored (and shown) as ids; roles are free names; empty means any.

Sensitive values are sealed under the master key, bound to the variable's row and column, and
never leave the appliance through the API: a sensitive variable reads back as
``"value": null, "has_value": true``. So that a GET-modify-PUT round trip loses nothing, a
sensitive variable sent with ``"value": null`` and the ``id`` of a stored sensitive variable
keeps its sealed value (ids are kept across PUTs); without such an id it is a 422.

A scope id whose environment or target was deleted since stays stored as it was (a scope that
matches nothing is safer than one silently widened to everything) and is accepted back on PUT.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import NAME_PATTERN, Body, Out
from octo_appliance.db import Environment, Project, Target, Variable
from octo_appliance.db.base import BaseModel as DbModel
from octo_appliance.db.base import new_id
from octo_appliance.exceptions import ValidationFailed
from octo_appliance.security.permissions import Permission

router = Router("variables")

MAX_VARIABLES = 1000
MAX_VALUE_CHARS = 262_144
MAX_SCOPE_ITEMS = 500
MAX_REPORTED_ERRORS = 50
_LOOKUP_CHUNK = 500
_INSERT_CHUNK = 100


class VariableScope(Body):
    environments: list[str] = Field(default_factory=list, max_length=MAX_SCOPE_ITEMS)
    roles: list[str] = Field(default_factory=list, max_length=MAX_SCOPE_ITEMS)
    targets: list[str] = Field(default_factory=list, max_length=MAX_SCOPE_ITEMS)

    @field_validator("environments", "roles", "targets")
    @classmethod
    def _non_empty(cls, refs: list[str]) -> list[str]:
        if any(not ref or len(ref) > 200 for ref in refs):
            raise ValueError("each entry is a non-empty id or name of at most 200 characters")
        return list(dict.fromkeys(refs))


class VariableIn(BaseModel):
    """One variable; ``value`` is kept byte for byte (not stripped, unlike other strings)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=40, description="Keep this stored variable's id.")
    name: str = Field(min_length=1, max_length=300, pattern=NAME_PATTERN)
    value: str | None = Field(
        None,
        max_length=MAX_VALUE_CHARS,
        description="null on a sensitive variable with an id keeps the stored value.",
    )
    sensitive: bool = False
    scope: VariableScope = Field(default_factory=VariableScope)
    has_value: bool | None = Field(
        None, description="Ignored: accepted so a GET result can be sent back unchanged."
    )

    @field_validator("name", "id", mode="before")
    @classmethod
    def _strip(cls, text: Any) -> Any:
        return text.strip() if isinstance(text, str) else text


class VariableSetIn(Body):
    project_id: str | None = Field(
        None, max_length=40, description="Optional; if given it must be this project's id."
    )
    variables: list[VariableIn] = Field(max_length=MAX_VARIABLES)


class VariableScopeOut(Out):
    environments: list[str]
    roles: list[str]
    targets: list[str]


class VariableOut(Out):
    id: str
    name: str
    value: str | None = Field(description="Always null for a sensitive variable.")
    sensitive: bool
    has_value: bool
    scope: VariableScopeOut


class VariableSetOut(Out):
    project_id: str
    variables: list[VariableOut]


def to_json(row: Variable) -> dict[str, Any]:
    scope = row.scope or {}
    return {
        "id": row.id,
        "name": row.name,
        "value": None if row.sensitive else row.value,
        "sensitive": row.sensitive,
        "has_value": (row.sealed_value if row.sensitive else row.value) is not None,
        "scope": {
            "environments": list(scope.get("environments", [])),
            "roles": list(scope.get("roles", [])),
            "targets": list(scope.get("targets", [])),
        },
    }


def _variable_set(project: Project, rows: Iterable[Variable]) -> dict[str, Any]:
    return {"project_id": project.id, "variables": [to_json(row) for row in rows]}


def _lookup(model: type[DbModel], refs: set[str]) -> dict[str, str]:
    """Id or name -> id for every reference that exists, a bounded number of queries."""
    found: dict[str, str] = {}
    refs_list = sorted(refs)
    for start in range(0, len(refs_list), _LOOKUP_CHUNK):
        chunk = refs_list[start : start + _LOOKUP_CHUNK]
        name_col = model.name  # type: ignore[attr-defined]
        query: Any = model.select(model.id, name_col).where(
            model.id.in_(chunk) | name_col.in_(chunk)
        )
        for row_id, name in query.tuples():
            found[row_id] = row_id
            found[name] = row_id
    return found


class _Planner:
    """Checks the new list against the stored one and builds the rows to write."""

    def __init__(self, ctx: RequestContext, project: Project, body: VariableSetIn) -> None:
        self.ctx = ctx
        self.project = project
        self.body = body
        self.stored = {row.id: row for row in Variable.select().where(Variable.project == project)}
        stale_envs: set[str] = set()
        stale_targets: set[str] = set()
        for row in self.stored.values():
            stale_envs.update((row.scope or {}).get("environments", []))
            stale_targets.update((row.scope or {}).get("targets", []))
        env_refs = {ref for v in body.variables for ref in v.scope.environments}
        target_refs = {ref for v in body.variables for ref in v.scope.targets}
        self.envs = {s: s for s in stale_envs} | _lookup(Environment, env_refs)
        self.targets = {s: s for s in stale_targets} | _lookup(Target, target_refs)
        self.errors: list[dict[str, str]] = []

    def error(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def _resolve(self, refs: list[str], known: dict[str, str], field: str, kind: str) -> list[str]:
        ids = []
        for ref in refs:
            if ref in known:
                ids.append(known[ref])
            else:
                self.error(field, f"no {kind} with id or name '{ref}'")
        return list(dict.fromkeys(ids))

    def rows(self) -> list[dict[str, Any]]:
        """The rows to insert, or a 422 listing every problem found."""
        vault = self.ctx.appliance.vault
        seen_ids: set[str] = set()
        seen_keys: set[tuple[Any, ...]] = set()
        rows: list[dict[str, Any]] = []
        for index, item in enumerate(self.body.variables):
            at = f"variables.{index}"
            old = None
            if item.id in seen_ids:
                self.error(f"{at}.id", f"variable '{item.id}' is listed twice")
            elif item.id is not None:
                old = self.stored.get(item.id)
                if old is None:
                    self.error(f"{at}.id", f"no variable '{item.id}' in this project")
                seen_ids.add(item.id)
            scope = {
                "environments": self._resolve(
                    item.scope.environments, self.envs, f"{at}.scope.environments", "environment"
                ),
                "roles": item.scope.roles,
                "targets": self._resolve(
                    item.scope.targets, self.targets, f"{at}.scope.targets", "target"
                ),
            }
            key = (item.name.casefold(), *(frozenset(v) for v in scope.values()))
            if key in seen_keys:
                self.error(f"{at}.name", f"'{item.name}' is listed twice with the same scope")
            seen_keys.add(key)
            row_id = old.id if old is not None else new_id(Variable.id_prefix)
            row: dict[str, Any] = {
                "id": row_id,
                "project": self.project.id,
                "name": item.name,
                "sensitive": item.sensitive,
                "value": None,
                "sealed_value": None,
                "scope": scope,
                "position": index,
            }
            if not item.sensitive:
                row["value"] = item.value
            elif item.value is not None:
                row["sealed_value"] = vault.seal(
                    item.value, Variable(id=row_id).aad("sealed_value")
                )
            elif old is not None and old.sensitive and old.sealed_value is not None:
                row["sealed_value"] = old.sealed_value  # same row id, so it still opens
            elif old is not None or item.id is None:  # a bad id was reported already
                self.error(
                    f"{at}.value",
                    "a sensitive variable needs a value, unless it names the id of a stored "
                    "sensitive variable whose value it keeps",
                )
            rows.append(row)
        if self.errors:
            shown = self.errors[:MAX_REPORTED_ERRORS]
            raise ValidationFailed(
                f"the variables have {len(self.errors)} problem(s): {shown[0]['message']}",
                details=shown,
                hint="fix the listed fields; ids and scopes come from GET on the same path",
            )
        return rows


@router.get(
    "/projects/{ref}/variables",
    summary="Get a project's variables (sensitive values are never returned)",
    response=VariableSetOut,
)
def get_variables(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """Sensitive variables read as ``"value": null, "has_value": true``."""
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.VARIABLE_VIEW, project=project.id)
    rows = Variable.select().where(Variable.project == project.id).order_by(Variable.position)
    return _variable_set(project, rows)


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
    and are stored as ids. Two variables with the same name (case-insensitive) and the same
    scope are a 422, as are unknown ids and references; every problem is listed in ``details``.
    """
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.VARIABLE_EDIT, project=project.id)
    if body.project_id is not None and body.project_id != project.id:
        raise ValidationFailed(
            f"the body is for project '{body.project_id}', not '{project.id}'",
            details=[{"field": "project_id", "message": "does not match the path"}],
            hint="leave project_id out, or send the list to its own project",
        )
    planner = _Planner(ctx, project, body)
    rows = planner.rows()
    Variable.delete().where(Variable.project == project.id).execute()
    for start in range(0, len(rows), _INSERT_CHUNK):
        Variable.insert_many(rows[start : start + _INSERT_CHUNK]).execute()
    kept = {row["id"] for row in rows}
    ctx.audit(
        "update",
        "variables",
        project.id,
        project.name,
        {
            "count": len(rows),
            "names": sorted({row["name"] for row in rows}),
            "sensitive": sorted({row["name"] for row in rows if row["sensitive"]}),
            "removed": sorted({v.name for v in planner.stored.values() if v.id not in kept}),
        },
    )
    ordered = Variable.select().where(Variable.project == project.id).order_by(Variable.position)
    return _variable_set(project, ordered)
