"""Pydantic models shared by every resource: list queries, pages, errors, and text types.

Request models forbid unknown fields, so a misspelt field is a 422 naming it, never ignored.
Every string a request carries is one of two kinds, and says so in the OpenAPI document:

- :data:`Line` (and names, :func:`name_field`): single-line text, no control character at all
  (C0, DEL, C1: terminal escapes, NUL, line breaks);
- :data:`Text`: multi-line text (descriptions, script bodies, variable values, certificates):
  newlines and tabs are fine, NUL never (PostgreSQL cannot store it, C strings end at it).

The request body is also checked as a whole before the schema (``api/routing.py``): no NUL or
unpaired surrogate anywhere, keys of free-form objects included, and bounded nesting.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

T = TypeVar("T")

#: no C0 control, DEL or C1 control anywhere
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
#: at least one visible character, and no control character
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
#: anything but NUL
TEXT_PATTERN = r"^[^\x00]*$"

Line = Annotated[str, StringConstraints(pattern=LINE_PATTERN)]
Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
#: an entry of a list of ids or names: single-line text with a visible character
Ref = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NAME_PATTERN),
]
#: a target role: non-empty, no control character, no comma (roles are written comma-separated)
ROLE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f,]*[^\s\x00-\x1f\x7f-\x9f,][^\x00-\x1f\x7f-\x9f,]*$"
Role = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=ROLE_PATTERN),
]


#: the OpenAPI component of a value inside a free-form object (step properties): any JSON
#: whose strings, keys included, hold no NUL, as ``api/routing.py`` checks
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": TEXT_PATTERN},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {
            "type": "object",
            "propertyNames": {"pattern": TEXT_PATTERN},
            "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        },
    ]
}
#: marks where ``api/openapi.py`` puts a reference to that component (pydantic itself refuses a
#: ``$ref`` it did not make)
JSON_VALUE_MARK = "x-octo-json-value"
FreeJson = Annotated[Any, WithJsonSchema({JSON_VALUE_MARK: True})]


def line_keys(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of a ``dict[Line, ...]`` field: pydantic documents key patterns as
    ``patternProperties``, which lets other keys through; ``propertyNames`` is what it checks."""
    for pattern, values in schema.pop("patternProperties", {}).items():
        schema["propertyNames"] = {"pattern": pattern}
        schema["additionalProperties"] = values


def name_field(default: Any = ..., max_length: int = 200) -> Any:
    """A required (or optional, with a default) human-readable unique name."""
    return Field(default, min_length=1, max_length=max_length, pattern=NAME_PATTERN)


class Body(BaseModel):
    """Base of request bodies: unknown fields are errors; strings are stripped; types are
    strict (``true`` is not the integer 1, ``"5"`` not the number 5), as JSON Schema says."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


class Out(BaseModel):
    """Base of response models (documentation and conformance tests)."""

    model_config = ConfigDict(extra="forbid")


class ListQuery(BaseModel):
    """``?skip=&take=&name=``: every list is paginated and filterable by name."""

    model_config = ConfigDict(extra="ignore")

    skip: int = Field(0, ge=0, le=1_000_000_000, description="Rows to skip.")
    take: int = Field(50, ge=1, le=1000, description="Rows to return (at most 1000).")
    name: Line | None = Field(
        None, max_length=200, description="Case-insensitive substring of the name."
    )


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int


class ErrorDetail(BaseModel):
    field: str | None = None
    message: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[Any] | dict[str, Any]
    hint: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class Deleted(Out):
    id: str
    deleted: bool = True
