"""The interface every step type implements, built-in or third-party."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one property of a step, shown to the user per field."""

    field: str
    message: str


class StepType:
    """Base class of step types. Subclasses set ``name`` and ``summary``.

    ``validate`` returns the problems with a step's properties (empty when valid), so the API
    can report every bad field at once rather than the first.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def validate(self, properties: dict[str, Any]) -> list[FieldProblem]:
        return []
