"""Form fields to the API's request models, and the API's refusals back to fields.

A portal form posts plain strings; the API's handlers take its pydantic models. This module is
the one translation: a form becomes the same model the API validates (so the same limits), and
a refusal's ``details[].field`` becomes an error next to the field it names. Errors naming no
field of the form are shown above it, so nothing the API said is lost.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from octo_appliance.api.routing import validation_details
from octo_appliance.exceptions import ApiError

M = TypeVar("M", bound=BaseModel)
#: the key of errors that name no field of the form: shown above it
PROBLEM = ""
#: how the API words a unique name already in use (``refs.require_unique_name`` and others)
TAKEN = "already exists"


def lines(value: str) -> list[str]:
    """A textarea or comma list of names (roles, environments, members) as a clean list."""
    parts = value.replace(",", "\n").splitlines()
    return [part.strip() for part in parts if part.strip()]


def number(value: str) -> int | str:
    """A number field: an int when it is one, else the text (the model then says what is
    wrong with it, as the API would for a JSON string)."""
    try:
        return int(value.strip())
    except ValueError:
        return value


def validate(model: type[M], values: dict[str, Any]) -> tuple[M | None, list[dict[str, Any]]]:
    """``values`` validated as ``model``: (the body, []) or (None, the API's error details)."""
    try:
        return model.model_validate(values), []
    except ValidationError as exc:
        return None, validation_details(exc)


def parse(model: type[M], values: dict[str, Any]) -> tuple[M | None, dict[str, str]]:
    """``values`` validated as ``model``: (the body, {}) or (None, errors by field name)."""
    body, details = validate(model, values)
    return body, field_errors(details)


def field_errors(details: Any, fields: tuple[str, ...] = ()) -> dict[str, str]:
    """``[{"field": "roles.0.role", "message": ...}]`` as ``{"roles": ...}``: the first part of
    the dotted path is the form's field; ``fields`` (when given) are the only ones it has."""
    errors: dict[str, str] = {}
    for detail in details if isinstance(details, list) else []:
        field = str(detail.get("field") or "").split(".", 1)[0]
        if fields and field not in fields:
            field = PROBLEM
        message = str(detail.get("message", "")).removeprefix("Value error, ")
        errors.setdefault(field, message[:1].upper() + message[1:])
    return errors


def refusal_errors(exc: ApiError, fields: tuple[str, ...], fallback: str = "") -> dict[str, str]:
    """An API refusal as errors by field: its details where they name a field; a taken name
    (the API's 409 "... already exists", which names no field) under ``fallback``; anything
    else above the form."""
    errors = field_errors(exc.details, fields)
    if not errors:
        message = exc.message[:1].upper() + exc.message[1:]
        hint = f" ({exc.hint})" if exc.hint else ""
        taken = fallback in fields and TAKEN in exc.message
        errors[fallback if taken else PROBLEM] = f"{message}{hint}."
    elif PROBLEM not in errors:
        errors[PROBLEM] = exc.message[:1].upper() + exc.message[1:] + "."
    return errors
