"""Variable lists read and replaced as a whole: shared by project variables and library sets.

A list belongs to one owner row (a project, a library variable set); its rows live in a model
with the same columns as :class:`~octo_appliance.db.projects.Variable` plus the owner's foreign
key. Both resources share every rule here, so they cannot drift apart:

- ``PUT`` takes ``{"variables": [{"id"?, "name", "value", "sensitive", "scope"}]}``; both verbs
  answer the list in the order given, and a GET answer is a valid PUT body as it is.
- ``scope`` is ``{"environments", "roles", "targets", "steps"}``; environments and targets are
  given by id or name and stored (and shown) as ids; roles and step names are free names; an
  empty list means any.
- Sensitive values are sealed under the master key, bound to the variable's row and column, and
  never returned: they read back as ``"value": null, "has_value": true``. A sensitive variable
  sent with ``"value": null`` and the ``id`` of a stored sensitive variable keeps its sealed
  value (ids are kept across PUTs), so a GET-modify-PUT round trip loses nothing.
- A scope id whose environment or target was deleted since stays stored as it was (a scope that
  matches nothing is safer than one silently widened to everything) and is accepted back.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from octo_appliance.api.context import RequestContext
from octo_appliance.api.schemas import NAME_PATTERN, Body, Line, Out, Ref, Text
from octo_appliance.db import Environment, Target
from octo_appliance.db.base import BaseModel as DbModel
from octo_appliance.db.base import new_id
from octo_appliance.exceptions import ValidationFailed

MAX_VARIABLES = 1000
MAX_VALUE_CHARS = 262_144
MAX_SCOPE_ITEMS = 500
MAX_REPORTED_ERRORS = 50
SCOPE_KEYS = ("environments", "roles", "targets", "steps")
_LOOKUP_CHUNK = 500
_INSERT_CHUNK = 100


class VariableScope(Body):
    environments: list[Ref] = Field(default_factory=list, max_length=MAX_SCOPE_ITEMS)
    roles: list[Ref] = Field(default_factory=list, max_length=MAX_SCOPE_ITEMS)
    targets: list[Ref] = Field(default_factory=list, max_length=MAX_SCOPE_ITEMS)
    steps: list[Ref] = Field(
        default_factory=list, max_length=MAX_SCOPE_ITEMS, description="Step names."
    )

    @field_validator("environments", "roles", "targets", "steps")
    @classmethod
    def _non_empty(cls, refs: list[str]) -> list[str]:
        if any(not ref or len(ref) > 200 for ref in refs):
            raise ValueError("each entry is a non-empty id or name of at most 200 characters")
        return list(dict.fromkeys(refs))


class VariableIn(BaseModel):
    """One variable; ``value`` is kept byte for byte (not stripped, unlike other strings)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: Line | None = Field(None, max_length=40, description="Keep this stored variable's id.")
    name: str = Field(min_length=1, max_length=300, pattern=NAME_PATTERN)
    value: Text | None = Field(
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


class VariableScopeOut(Out):
    environments: list[str]
    roles: list[str]
    targets: list[str]
    steps: list[str]


class VariableOut(Out):
    id: str
    name: str
    value: str | None = Field(description="Always null for a sensitive variable.")
    sensitive: bool
    has_value: bool
    scope: VariableScopeOut


def scope_json(scope: dict[str, Any] | None) -> dict[str, list[str]]:
    scope = scope or {}
    return {key: list(scope.get(key, [])) for key in SCOPE_KEYS}


def to_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "value": None if row.sensitive else row.value,
        "sensitive": row.sensitive,
        "has_value": (row.sealed_value if row.sensitive else row.value) is not None,
        "scope": scope_json(row.scope),
    }


def lookup_ids(model: type[DbModel], refs: set[str]) -> dict[str, str]:
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


class VariableList:
    """The variables of one owner: ``model`` rows whose ``owner_field`` is ``owner_id``."""

    def __init__(self, model: type[DbModel], owner_field: str, owner_id: str, noun: str) -> None:
        self.model = model
        self.owner_field = owner_field
        self.owner_id = owner_id
        #: how errors name the owner: "this project", "this library variable set"
        self.noun = noun

    @property
    def _owner_column(self) -> Any:
        return getattr(self.model, self.owner_field)

    def rows(self) -> list[Any]:
        query = self.model.select().where(self._owner_column == self.owner_id)
        return list(query.order_by(self.model.position))  # type: ignore[attr-defined]

    def as_json(self) -> list[dict[str, Any]]:
        return [to_json(row) for row in self.rows()]

    def replace(self, ctx: RequestContext, items: list[VariableIn]) -> dict[str, Any]:
        """Check ``items``, then replace the stored list; return audit details (no values)."""
        planner = _Planner(ctx, self, items)
        rows = planner.plan()
        self.model.delete().where(self._owner_column == self.owner_id).execute()
        for start in range(0, len(rows), _INSERT_CHUNK):
            self.model.insert_many(rows[start : start + _INSERT_CHUNK]).execute()
        kept = {row["id"] for row in rows}
        return {
            "count": len(rows),
            "names": sorted({row["name"] for row in rows}),
            "sensitive": sorted({row["name"] for row in rows if row["sensitive"]}),
            "removed": sorted({v.name for v in planner.stored.values() if v.id not in kept}),
        }


class _Planner:
    """Checks the new list against the stored one and builds the rows to write."""

    def __init__(self, ctx: RequestContext, target: VariableList, items: list[VariableIn]) -> None:
        self.ctx = ctx
        self.target = target
        self.items = items
        self.stored = {row.id: row for row in target.rows()}
        stale_envs: set[str] = set()
        stale_targets: set[str] = set()
        for row in self.stored.values():
            stale_envs.update((row.scope or {}).get("environments", []))
            stale_targets.update((row.scope or {}).get("targets", []))
        env_refs = {ref for v in items for ref in v.scope.environments}
        target_refs = {ref for v in items for ref in v.scope.targets}
        self.envs = {s: s for s in stale_envs} | lookup_ids(Environment, env_refs)
        self.targets = {s: s for s in stale_targets} | lookup_ids(Target, target_refs)
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

    def _scope(self, item: VariableIn, at: str) -> dict[str, list[str]]:
        return {
            "environments": self._resolve(
                item.scope.environments, self.envs, f"{at}.scope.environments", "environment"
            ),
            "roles": item.scope.roles,
            "targets": self._resolve(
                item.scope.targets, self.targets, f"{at}.scope.targets", "target"
            ),
            "steps": item.scope.steps,
        }

    def plan(self) -> list[dict[str, Any]]:
        """The rows to insert, or a 422 listing every problem found."""
        vault = self.ctx.appliance.vault
        model = self.target.model
        seen_ids: set[str] = set()
        seen_keys: set[tuple[Any, ...]] = set()
        rows: list[dict[str, Any]] = []
        for index, item in enumerate(self.items):
            at = f"variables.{index}"
            old = None
            if item.id in seen_ids:
                self.error(f"{at}.id", f"variable '{item.id}' is listed twice")
            elif item.id is not None:
                old = self.stored.get(item.id)
                if old is None:
                    self.error(f"{at}.id", f"no variable '{item.id}' in {self.target.noun}")
                seen_ids.add(item.id)
            scope = self._scope(item, at)
            key = (item.name.casefold(), *(frozenset(v) for v in scope.values()))
            if key in seen_keys:
                self.error(f"{at}.name", f"'{item.name}' is listed twice with the same scope")
            seen_keys.add(key)
            row_id = old.id if old is not None else new_id(model.id_prefix)
            row: dict[str, Any] = {
                "id": row_id,
                self.target.owner_field: self.target.owner_id,
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
                row["sealed_value"] = vault.seal(item.value, model(id=row_id).aad("sealed_value"))
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


def check_owner_field(given: str | None, owner_id: str, field: str, kind: str) -> None:
    """A GET answer names its owner; sent to another owner's path it is a 422, not a copy."""
    if given is not None and given != owner_id:
        raise ValidationFailed(
            f"the body is for {kind} '{given}', not '{owner_id}'",
            details=[{"field": field, "message": "does not match the path"}],
            hint=f"leave {field} out, or send the list to its own {kind}",
        )
