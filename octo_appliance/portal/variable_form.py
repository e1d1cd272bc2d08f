"""One variable as a form, for project variables and library sets alike (the API shares their
rules in ``api/variable_lists.py``; the portal shares their form).

The API replaces a variable list as a whole, so a change to one variable is the stored list
(as GET answers it, sensitive values ``null``: kept by their id) with that one item added,
replaced or removed. A sensitive value is write-only: its field is a password field that is
never filled in, and left empty it keeps the sealed value.
"""

from __future__ import annotations

from typing import Any

from octo_appliance.portal.forms import checked_ids, lines

ENV = "env."
FIELDS = ("name", "value", "roles", "targets", "steps")


def body_item(variable: dict[str, Any]) -> dict[str, Any]:
    """A stored variable as the API takes it back (its id kept, a sensitive value null)."""
    return {
        "id": variable["id"],
        "name": variable["name"],
        "value": None if variable["sensitive"] else variable["value"],
        "sensitive": variable["sensitive"],
        "scope": variable["scope"],
    }


def form_values(variable: dict[str, Any]) -> dict[str, str]:
    """A stored variable as the form's values (a sensitive value never)."""
    scope = variable["scope"]
    values = {
        "name": variable["name"],
        "value": "" if variable["sensitive"] else (variable["value"] or ""),
        "sensitive": "1" if variable["sensitive"] else "",
        "roles": ", ".join(scope["roles"]),
        "targets": ", ".join(scope["targets"]),
        "steps": ", ".join(scope["steps"]),
    }
    values.update({ENV + env: "1" for env in scope["environments"]})
    return values


def typed_values(form: dict[str, str]) -> dict[str, str]:
    """What was typed, to show again after a refusal: everything but a sensitive value."""
    kept = {k: v for k, v in form.items() if k != "csrf_token"}
    if kept.get("sensitive"):
        kept.pop("value", None)
    return kept


def parse(
    form: dict[str, str], environment_ids: list[str], stored: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The API's variable item from a posted form (``stored``: the variable being edited)."""
    sensitive = bool(form.get("sensitive"))
    value: str | None = form.get("value", "")
    if sensitive and not value and stored is not None and stored["sensitive"]:
        value = None  # left empty: keep the sealed value (the API matches it by id)
    hidden_envs = [
        env
        for env in (stored or {}).get("scope", {}).get("environments", [])
        if env not in environment_ids
    ]
    item: dict[str, Any] = {
        "name": form.get("name", ""),
        "value": value,
        "sensitive": sensitive,
        "scope": {
            "environments": checked_ids(form, ENV, environment_ids) + hidden_envs,
            "roles": lines(form.get("roles", "")),
            "targets": lines(form.get("targets", "")),
            "steps": lines(form.get("steps", "")),
        },
    }
    if stored is not None:
        item["id"] = stored["id"]
    return item


def place(index: int) -> Any:
    """Maps the API's ``variables.N.FIELD`` of the edited variable to this form's names."""
    at = f"variables.{index}."

    def field(api_field: str) -> str | None:
        if not api_field.startswith(at):
            return None
        rest = api_field[len(at) :].removeprefix("scope.").split(".", 1)[0]
        return rest if rest in (*FIELDS, "environments", "sensitive") else None

    return field
