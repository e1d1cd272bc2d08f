"""Step-type property schemas: what each property is, so the API validates it and the portal
can draw a form for any step type, third-party ones included.

A step type lists its properties as :class:`Property` declarations (``StepType.properties``).
The API checks a process step against them (:func:`schema_problems`: unknown names, required
ones missing, wrong types, values outside ``enum`` or the bounds), then asks the step type's own
``validate`` for what a schema cannot say (a script's ``#{...}`` syntax, a path that must stay
inside the package); ``GET /api/v1/step-types`` publishes them (:meth:`Property.describe`).

``secret`` marks a value a form masks as it is typed and the step-types listing flags; the
value is stored in the process like any other, so a real secret belongs in a sensitive
variable the property names with ``#{...}``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: the property types and what each accepts
PROPERTY_TYPES: dict[str, str] = {
    "string": "one line of text",
    "text": "text, several lines allowed",
    "integer": "a whole number",
    "boolean": "true or false",
    "list": "a list of text values",
    "script": 'a bash script as text, or {"syntax", "body"}',
    "object": "a JSON object",
}


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one property of a step, shown to the user per field."""

    field: str
    message: str


@dataclass(frozen=True)
class Property:
    """One property of a step type: its name, type, and what a form needs to show it."""

    name: str
    #: one of :data:`PROPERTY_TYPES`
    type: str
    help: str
    required: bool = False
    #: masked in forms and flagged in ``GET /api/v1/step-types`` (see the module docstring)
    secret: bool = False
    #: the value the step type uses when the property is absent (None: none)
    default: Any = None
    #: the allowed values, for ``string`` and ``integer`` properties
    enum: tuple[Any, ...] = ()
    #: bounds of an ``integer``
    minimum: int | None = None
    maximum: int | None = None
    #: most characters of a ``string``/``text``/``script`` body, items of a ``list``
    max_length: int | None = None

    def describe(self) -> dict[str, Any]:
        """The declaration as JSON (what ``GET /api/v1/step-types`` shows)."""
        shown: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "help": self.help,
            "required": self.required,
            "secret": self.secret,
            "default": self.default,
        }
        for key in ("enum", "minimum", "maximum", "max_length"):
            value = getattr(self, key)
            if value not in (None, ()):
                shown[key] = list(value) if key == "enum" else value
        return shown

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this property, or None."""
        if _empty(value):
            return "is required" if self.required else None
        wrong = _type_problem(self.type, value)
        if wrong is not None:
            return f"must be {PROPERTY_TYPES[self.type]}{wrong}"
        if self.enum and value not in self.enum:
            return "must be one of " + ", ".join(str(choice) for choice in self.enum)
        if self.type == "integer":
            if self.minimum is not None and value < self.minimum:
                return f"must be at least {self.minimum}"
            if self.maximum is not None and value > self.maximum:
                return f"must be at most {self.maximum}"
        if self.max_length is not None and _length(self.type, value) > self.max_length:
            unit = "items" if self.type == "list" else "characters"
            return f"is longer than {self.max_length} {unit}"
        return None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _type_problem(kind: str, value: Any) -> str | None:
    """None when ``value`` has type ``kind``; else "" or a detail to append."""
    if kind in ("string", "text"):
        if not isinstance(value, str):
            return ""
        return ", without line breaks" if kind == "string" and "\n" in value else None
    if kind == "integer":
        return None if isinstance(value, int) and not isinstance(value, bool) else ""
    if kind == "boolean":
        return None if isinstance(value, bool) else ""
    if kind == "list":
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        return None if ok else ""
    if kind == "script":
        if isinstance(value, str):
            return None
        ok = isinstance(value, dict) and isinstance(value.get("body"), str)
        return None if ok and set(value) <= {"syntax", "body"} else ""
    return None if isinstance(value, dict) else ""


def _length(kind: str, value: Any) -> int:
    if kind == "script" and isinstance(value, dict):
        return len(value["body"])
    return len(value)


def unknown_properties(
    properties: Mapping[str, Any], known: Collection[str], message: str
) -> list[FieldProblem]:
    """``message`` for each of ``properties`` (sorted) that is not one of ``known``."""
    return [FieldProblem(key, message) for key in sorted(set(properties) - set(known))]


def schema_problems(
    step_type: str, schema: Sequence[Property], properties: Mapping[str, Any]
) -> list[FieldProblem]:
    """Every way ``properties`` break ``schema`` (empty schema: the step type declares none
    and checks everything in its own ``validate``)."""
    if not schema:
        return []
    declared = {prop.name: prop for prop in schema}
    names = ", ".join(declared)
    unknown = f"is not a property of {step_type} (its properties: {names})"
    problems = unknown_properties(properties, declared, unknown)
    for prop in schema:
        message = prop.problem(properties.get(prop.name))
        if message:
            problems.append(FieldProblem(prop.name, message))
    return problems


def check_schema(schema: object) -> str | None:
    """What is wrong with a step type's declared ``properties``, or None (checked when the
    step type is registered, so a malformed declaration stops the start, not a request)."""
    if not isinstance(schema, tuple) or not all(isinstance(p, Property) for p in schema):
        return "properties must be a tuple of octo_appliance.plugin_api.Property"
    seen: set[str] = set()
    for prop in schema:
        if not prop.name or prop.name in seen:
            return f"property name {prop.name!r} is empty or declared twice"
        seen.add(prop.name)
        if prop.type not in PROPERTY_TYPES:
            return f"property {prop.name} has type {prop.type!r}; use one of " + ", ".join(
                PROPERTY_TYPES
            )
        if not prop.help:
            return f"property {prop.name} has no help text"
        if prop.default is not None and prop.problem(prop.default):
            return f"property {prop.name}'s default {prop.default!r} {prop.problem(prop.default)}"
    return None
