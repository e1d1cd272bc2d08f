"""Pydantic models shared by every resource: list queries, pages, errors.

Request models forbid unknown fields, so a misspelt field is a 422 naming it, never ignored.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

NAME_PATTERN = r"^[^\x00-\x1f]*\S[^\x00-\x1f]*$"


def name_field(default: Any = ..., max_length: int = 200) -> Any:
    """A required (or optional, with a default) human-readable unique name."""
    return Field(default, min_length=1, max_length=max_length, pattern=NAME_PATTERN)


class Body(BaseModel):
    """Base of request bodies: unknown fields are errors; strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Out(BaseModel):
    """Base of response models (documentation and conformance tests)."""

    model_config = ConfigDict(extra="forbid")


class ListQuery(BaseModel):
    """``?skip=&take=&name=``: every list is paginated and filterable by name."""

    model_config = ConfigDict(extra="ignore")

    skip: int = Field(0, ge=0, le=1_000_000_000, description="Rows to skip.")
    take: int = Field(50, ge=1, le=1000, description="Rows to return (at most 1000).")
    name: str | None = Field(
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
