"""A project's variables as a JSON file: what ``variables export`` writes and ``import`` reads.

::

    {"project": "web-shop",
     "variables": [
       {"name": "Port", "value": "8080"},
       {"name": "Port", "value": "80", "scope": {"environments": ["Prod"]}},
       {"name": "DbPassword", "sensitive": true, "value": {"keep": true}}]}

Scopes name environments and targets by name (the API stores ids; names travel between
appliances and read well in a review); an empty scope is left out. A sensitive value is never
exported: it is written as ``{"keep": true}``, and an import keeps the stored value of the
variable with the same name and scope (the API keeps a sealed value when the variable's id is
sent with ``"value": null``). A file may give a sensitive value in clear instead; the import
then seals it, and reports it as changed each time, since the stored value cannot be read to
compare.

Import matches variables by name (case-insensitive) and scope, computes the diff
(:mod:`octo_appliance.cli.changes`) and the body of the one ``PUT`` that replaces the whole
list, so exporting and importing the same file changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from octo_appliance.cli.changes import Diff, order_changed, shown
from octo_appliance.exceptions import ConfigError, OctoError

SCOPE_KEYS = ("environments", "roles", "targets", "steps")
KEEP = {"keep": True}
FORMAT_HINT = (
    'each variable is {"name": ..., "value": "..." or {"keep": true}, "sensitive"?: true, '
    '"scope"?: {"environments"|"roles"|"targets"|"steps": [...]}} (docs/cli.md)'
)

Scope = dict[str, list[str]]
Key = tuple[str, tuple[frozenset[str], ...]]


class KeepProblem(OctoError):
    """A ``{"keep": true}`` with no stored sensitive value to keep (exit 1)."""


@dataclass(frozen=True)
class Entry:
    """One variable, its scope by names; ``keep``: sensitive, its stored value kept."""

    name: str
    value: str | None
    sensitive: bool = False
    keep: bool = False
    scope: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def scope_dict(self) -> Scope:
        given = dict(self.scope)
        return {key: list(given.get(key, ())) for key in SCOPE_KEYS}

    @property
    def key(self) -> Key:
        given = dict(self.scope)
        return self.name.casefold(), tuple(frozenset(given.get(k, ())) for k in SCOPE_KEYS)

    def scope_text(self) -> str:
        """``environments Dev, Test; roles web``; empty when unscoped."""
        return "; ".join(f"{key} {', '.join(values)}" for key, values in self.scope if values)

    def label(self) -> str:
        scope = self.scope_text()
        return self.name + (f" [{scope}]" if scope else "")

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"name": self.name}
        if self.sensitive:
            item["sensitive"] = True
        item["value"] = dict(KEEP) if self.sensitive else self.value
        scope = {key: list(values) for key, values in self.scope if values}
        if scope:
            item["scope"] = scope
        return item


def scope_of(scope: Scope) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((key, tuple(scope.get(key) or ())) for key in SCOPE_KEYS if scope.get(key))


def stored_entries(
    variables: list[dict[str, Any]], names: Callable[[str, list[str]], list[str]]
) -> list[tuple[str, Entry]]:
    """The API's variables as (id, entry); ``names(kind, ids)`` turns scope ids into names."""
    result = []
    for item in variables:
        scope = dict(item.get("scope") or {})
        for kind in ("environments", "targets"):
            scope[kind] = names(kind, list(scope.get(kind) or []))
        sensitive = bool(item.get("sensitive"))
        entry = Entry(
            name=item["name"],
            value=None if sensitive else item.get("value"),
            sensitive=sensitive,
            keep=sensitive,
            scope=scope_of(scope),
        )
        result.append((str(item["id"]), entry))
    return result


def export_document(project: str, stored: list[tuple[str, Entry]]) -> dict[str, Any]:
    return {"project": project, "variables": [entry.as_json() for _, entry in stored]}


def _problem(source: str, where: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {message}", hint=FORMAT_HINT)


def _scope(source: str, at: str, raw: Any) -> Scope:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or set(raw) - set(SCOPE_KEYS):
        raise _problem(source, f"{at}.scope", f"takes only the keys {', '.join(SCOPE_KEYS)}")
    scope: Scope = {}
    for key, values in raw.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _problem(source, f"{at}.scope.{key}", "must be a list of names")
        scope[key] = values
    return scope


def read_entries(document: Any, source: str) -> list[Entry]:
    """The variables of a file's document; a ConfigError names the first malformed field."""
    if not isinstance(document, dict) or not isinstance(document.get("variables"), list):
        raise _problem(source, "top level", 'must be an object with a "variables" list')
    entries: list[Entry] = []
    seen: dict[Key, int] = {}
    for index, item in enumerate(document["variables"]):
        at = f"variables[{index}]"
        if not isinstance(item, dict) or set(item) - {"name", "value", "sensitive", "scope"}:
            raise _problem(source, at, "is not a variable object")
        name, value, sensitive = item.get("name"), item.get("value"), item.get("sensitive", False)
        if not isinstance(name, str) or not name.strip():
            raise _problem(source, f"{at}.name", "must be a non-empty string")
        if not isinstance(sensitive, bool):
            raise _problem(source, f"{at}.sensitive", "must be true or false")
        keep = value == KEEP
        if keep and not sensitive:
            raise _problem(source, f"{at}.value", '{"keep": true} is only for sensitive values')
        if not keep and value is not None and not isinstance(value, str):
            raise _problem(source, f"{at}.value", 'must be a string, null or {"keep": true}')
        entry = Entry(
            name=name.strip(),
            value=None if keep else value,
            sensitive=sensitive,
            keep=keep,
            scope=scope_of(_scope(source, at, item.get("scope"))),
        )
        if entry.key in seen:
            raise _problem(
                source, at, f"'{entry.label()}' is also variables[{seen[entry.key]}] (same scope)"
            )
        seen[entry.key] = index
        entries.append(entry)
    return entries


def _changes(old: Entry, new: Entry) -> list[str]:
    details = []
    if old.name != new.name:
        details.append(f"name {old.name!r} -> {new.name!r}")
    if new.keep:
        return details
    if new.sensitive:
        details.append("new sensitive value" if old.sensitive else "becomes sensitive")
    elif old.sensitive:
        details.append(f"no longer sensitive, value {shown(new.value)}")
    elif old.value != new.value:
        details.append(f"value {shown(old.value)} -> {shown(new.value)}")
    return details


def plan(stored: list[tuple[str, Entry]], wanted: list[Entry]) -> tuple[Diff, list[dict[str, Any]]]:
    """The diff from ``stored`` to ``wanted`` and the variables of the PUT that applies it."""
    by_key = {entry.key: (row_id, entry) for row_id, entry in stored}
    diff = Diff()
    body: list[dict[str, Any]] = []
    for entry in wanted:
        match = by_key.get(entry.key)
        item: dict[str, Any] = {
            "name": entry.name,
            "value": entry.value,
            "sensitive": entry.sensitive,
            "scope": entry.scope_dict,
        }
        if match is None:
            if entry.keep:
                raise KeepProblem(
                    f"'{entry.label()}' says keep, but the project has no sensitive value with "
                    "that name and scope to keep",
                    hint="give its value once: 'octo-appliance variables set NAME --sensitive "
                    "--value-file F' with the same scope, or put the value in the file",
                )
            shown_value = "(sensitive)" if entry.sensitive else shown(entry.value)
            diff.add("add", entry.label(), shown_value)
        else:
            row_id, old = match
            if entry.keep and not old.sensitive:
                raise KeepProblem(
                    f"'{entry.label()}' says keep, but its stored value is not sensitive",
                    hint="give the value in the file (it is then sealed)",
                )
            item["id"] = row_id
            details = _changes(old, entry)
            if details:
                diff.add("change", entry.label(), "; ".join(details))
        body.append(item)
    wanted_keys = {entry.key for entry in wanted}
    for _, old in stored:
        if old.key not in wanted_keys:
            diff.add("remove", old.label())
    diff.reordered = order_changed([e.key for _, e in stored], [e.key for e in wanted])
    return diff, body
