"""A project's deployment process as a JSON file: what ``process export`` writes and ``import``
reads.

::

    {"project": "web-shop",
     "steps": [{"name": "Deploy", "type": "deploy-package", "roles": ["web"],
                "properties": {"package": "Web"}, "environments": ["Prod"], ...}]}

The steps are the API's own (``GET /projects/{ref}/process``, docs/deployments.md) with
environments named by name rather than id; fields a file leaves out take the API's defaults.
Import matches steps by name (case-insensitive), shows what is added, changed (which fields)
and removed, and applies the file with one ``PUT`` carrying the ``version`` it compared
against, so a process someone changed in between is refused (409) rather than overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from octo_appliance.cli.changes import Diff, order_changed
from octo_appliance.exceptions import ConfigError

#: a step's fields and the API's default for each one a file may leave out
DEFAULTS: dict[str, Any] = {
    "roles": [],
    "properties": {},
    "condition": "success",
    "environments": [],
    "start_with_previous": False,
    "window": None,
    "required": False,
    "retries": 0,
    "timeout": None,
    "disabled": False,
}
FORMAT_HINT = (
    'the file is {"steps": [{"name": ..., "type": ..., ...}]}, as '
    "'octo-appliance process export' writes it (docs/cli.md)"
)


def _normal(step: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **step}


def stored_steps(
    steps: list[dict[str, Any]], environment_names: Callable[[list[str]], list[str]]
) -> list[dict[str, Any]]:
    """The API's steps with environment ids turned into names."""
    return [
        {**step, "environments": environment_names(list(step.get("environments") or []))}
        for step in steps
    ]


def export_document(project: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"project": project, "steps": steps}


def read_steps(document: Any, source: str) -> list[dict[str, Any]]:
    """The steps of a file's document (the appliance checks each step's fields)."""
    if not isinstance(document, dict) or not isinstance(document.get("steps"), list):
        raise ConfigError(f'{source}: must be an object with a "steps" list', hint=FORMAT_HINT)
    seen: dict[str, int] = {}
    for index, step in enumerate(document["steps"]):
        name = step.get("name") if isinstance(step, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f'{source}: steps[{index}] needs a "name" (a non-empty string)', hint=FORMAT_HINT
            )
        key = name.strip().casefold()
        if key in seen:
            raise ConfigError(
                f"{source}: steps[{index}] '{name}' is also the name of steps[{seen[key]}]",
                hint="step names are unique in a process",
            )
        seen[key] = index
    return list(document["steps"])


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old, new = _normal(old), _normal(new)
    fields = []
    for key in sorted(set(old) | set(new)):
        if key == "properties":
            before, after = old.get(key) or {}, new.get(key) or {}
            fields += [
                f"properties.{name}"
                for name in sorted(set(before) | set(after))
                if before.get(name) != after.get(name)
            ]
        elif old.get(key) != new.get(key):
            fields.append(key)
    return fields


def plan(stored: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> Diff:
    """What replacing ``stored`` by ``wanted`` changes, step by step."""
    before = {step["name"].strip().casefold(): step for step in stored}
    diff = Diff()
    for step in wanted:
        old = before.get(step["name"].strip().casefold())
        if old is None:
            diff.add("add", step["name"], str(step.get("type", "")))
            continue
        fields = _changed_fields(old, step)
        if fields:
            diff.add("change", step["name"], ", ".join(fields))
    names = {step["name"].strip().casefold() for step in wanted}
    for key, old in before.items():
        if key not in names:
            diff.add("remove", old["name"])
    diff.reordered = order_changed(list(before), [s["name"].strip().casefold() for s in wanted])
    return diff
