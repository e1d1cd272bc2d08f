"""A process step as a form, drawn from its step type's declared property schema.

Any step type gets a form, a plugin's too: each declared property (``GET /api/v1/step-types``)
becomes a field by its type (``string`` a line, ``text``/``list``/``object`` a text area,
``integer`` a number, ``boolean`` a yes/no/default choice, ``script`` a syntax and a body, an
``enum`` a choice). A step type that declares no schema gets one JSON text area. The form's
names are ``prop.NAME`` for properties and the process model's own names for the common
fields; :func:`parse` turns a posted form back into the API's step body, and :func:`place`
maps the API's ``steps.N.FIELD`` errors onto those names.

A ``secret`` property is a password field that is never filled in: left empty when editing,
the stored value is kept.
"""

from __future__ import annotations

import json
from typing import Any

from octo_appliance.portal.forms import checked_ids, lines, whole_number

PROP = "prop."
ENV = "env."
SCRIPT_SYNTAXES = ("bash", "sh", "python", "pwsh")
CONDITIONS = ("success", "always", "failure", "variable")
JSON_FIELD = "properties_json"
#: the common step fields a form posts as they are named in the API's process model
COMMON = ("name", "roles", "condition", "window", "retries", "timeout")


def _shown(kind: str, value: Any) -> str:
    """A stored property value as the text its field shows."""
    if value is None:
        return ""
    if kind == "list" and isinstance(value, list):
        return "\n".join(str(item) for item in value)
    if kind == "boolean" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "object" or not isinstance(value, str | int):
        return json.dumps(value, indent=2)
    return str(value)


def form_values(step: dict[str, Any], schema: list[dict[str, Any]]) -> dict[str, str]:
    """A stored step as the form's field values (secret properties left empty)."""
    condition = step.get("condition", "success")
    values = {
        "name": step.get("name", ""),
        "roles": ", ".join(step.get("roles", [])),
        "condition": "variable" if isinstance(condition, dict) else condition,
        "condition_variable": condition.get("variable", "") if isinstance(condition, dict) else "",
        "start_with_previous": "1" if step.get("start_with_previous") else "",
        "required": "1" if step.get("required") else "",
        "disabled": "1" if step.get("disabled") else "",
        "window": _shown("integer", step.get("window")),
        "retries": _shown("integer", step.get("retries") or None),
        "timeout": _shown("integer", step.get("timeout")),
    }
    values.update({ENV + env: "1" for env in step.get("environments", [])})
    properties = dict(step.get("properties") or {})
    if not schema:
        values[JSON_FIELD] = json.dumps(properties, indent=2) if properties else ""
    for prop in schema:
        name, kind = prop["name"], prop["type"]
        value = properties.get(name)
        if prop.get("secret"):
            continue
        if kind == "script" and isinstance(value, dict):
            values[PROP + name] = str(value.get("body", ""))
            values[PROP + name + ".syntax"] = str(value.get("syntax", ""))
        else:
            values[PROP + name] = _shown(kind, value)
    return values


def _property(prop: dict[str, Any], form: dict[str, str], errors: dict[str, str]) -> Any:
    """One property's value from its field(s); None: not given (the step type's default)."""
    field = PROP + prop["name"]
    text = form.get(field, "")
    kind = prop["type"]
    if kind == "script":
        syntax = form.get(field + ".syntax", "")
        if not text.strip():
            return None
        return {"syntax": syntax, "body": text} if syntax else text
    if not text.strip():
        return None
    if kind == "integer":
        return whole_number(form, field, errors)
    if kind == "boolean":
        return text == "true"
    if kind == "list":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if kind == "object":
        try:
            return json.loads(text)
        except ValueError:
            errors[field] = 'Enter a JSON object, such as {"key": "value"}.'
            return None
    return text if kind == "text" else text.strip()


def parse(
    form: dict[str, str],
    schema: list[dict[str, Any]],
    step_type: str,
    environment_ids: list[str],
    stored: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The API's step body from a posted form, and the form's own errors (a number that is
    not one, JSON that does not parse); the API checks everything else."""
    errors: dict[str, str] = {}
    properties: dict[str, Any] = {}
    old = dict((stored or {}).get("properties") or {})
    if not schema:
        text = form.get(JSON_FIELD, "").strip()
        try:
            loaded = json.loads(text) if text else {}
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            properties = loaded
        else:
            errors[JSON_FIELD] = "Enter the properties as a JSON object."
    for prop in schema:
        value = _property(prop, form, errors)
        if value is None and prop.get("secret") and prop["name"] in old:
            value = old[prop["name"]]  # left empty: keep the stored secret
        if value is not None:
            properties[prop["name"]] = value
    choice = form.get("condition", "success")
    condition: Any = choice if choice in CONDITIONS[:3] else "success"
    if choice == "variable":
        condition = {"variable": form.get("condition_variable", "")}
    step = {
        "name": form.get("name", ""),
        "type": step_type,
        "roles": lines(form.get("roles", "")),
        "properties": properties,
        "condition": condition,
        "environments": checked_ids(form, ENV, environment_ids),
        "start_with_previous": bool(form.get("start_with_previous")),
        "required": bool(form.get("required")),
        "disabled": bool(form.get("disabled")),
        "window": whole_number(form, "window", errors),
        "retries": whole_number(form, "retries", errors) or 0,
        "timeout": whole_number(form, "timeout", errors, "a number of seconds"),
    }
    return step, errors


def place(index: int, has_schema: bool) -> Any:
    """Maps the API's ``steps.N.FIELD`` of the edited step to this form's field names."""
    at = f"steps.{index}."

    def field(api_field: str) -> str | None:
        if not api_field.startswith(at):
            return None
        rest = api_field[len(at) :]
        if rest.startswith("properties"):
            name = rest.removeprefix("properties").lstrip(".")
            if not has_schema or not name:
                return JSON_FIELD if not has_schema else "properties"
            return PROP + name.split(".", 1)[0]
        if rest.startswith("condition"):
            return "condition_variable" if rest.endswith("variable") else "condition"
        key = rest.split(".", 1)[0]
        known = (*COMMON, "environments", "start_with_previous", "required", "disabled")
        return key if key in known else None

    return field


def fields(schema: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The property fields to draw, each with its input kind and choices."""
    drawn = []
    for prop in schema:
        kind = prop["type"]
        widget = {
            "string": "line",
            "integer": "number",
            "text": "area",
            "list": "area",
            "object": "area",
            "script": "script",
            "boolean": "choice",
        }.get(kind, "area")
        choices: list[tuple[str, str]] = []
        if prop.get("enum"):
            widget = "choice"
            default = prop.get("default")
            choices = [("", f"Default ({default})" if default is not None else "Not set")]
            choices += [(str(choice), str(choice)) for choice in prop["enum"]]
        elif kind == "boolean":
            default = prop.get("default")
            shown = "" if default is None else f" ({'yes' if default else 'no'})"
            choices = [("", "Default" + shown), ("true", "Yes"), ("false", "No")]
        if prop.get("secret"):
            widget = "secret"
        help_text = prop.get("help", "")
        if kind == "list":
            help_text += " One per line."
        drawn.append(
            {
                **prop,
                "field": PROP + prop["name"],
                "widget": widget,
                "choices": choices,
                "help": help_text.strip(),
            }
        )
    return drawn
