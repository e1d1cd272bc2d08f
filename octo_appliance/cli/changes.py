"""What an import would change: the diff ``variables import`` and ``process import`` show
before they apply it (and all that ``--dry-run`` shows).

Items are matched by a key (a variable by name and scope, a step by name); the diff lists what
is added, changed (and how) and removed, and whether the order of the items that stay changed.
An empty diff is the round trip of an export: nothing to apply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_SHOWN_VALUE = 60
SIGNS = {"add": "+", "change": "~", "remove": "-"}


@dataclass(frozen=True)
class Change:
    kind: str  # "add", "change" or "remove"
    item: str  # how a person recognises the item: a name and its scope
    detail: str = ""

    def line(self) -> str:
        return f"  {SIGNS[self.kind]} {self.item}" + (f": {self.detail}" if self.detail else "")


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)
    #: the items present on both sides are in another order
    reordered: bool = False

    def add(self, kind: str, item: str, detail: str = "") -> None:
        self.changes.append(Change(kind, item, detail))

    @property
    def empty(self) -> bool:
        return not self.changes and not self.reordered

    def count(self, kind: str) -> int:
        return sum(1 for change in self.changes if change.kind == kind)

    def summary(self) -> str:
        text = (
            f"{self.count('add')} added, {self.count('change')} changed, "
            f"{self.count('remove')} removed"
        )
        return text + (", order changed" if self.reordered else "")

    def lines(self) -> list[str]:
        lines = [change.line() for change in self.changes]
        if self.reordered:
            lines.append("  ~ the order changes")
        return lines

    def as_json(self) -> dict[str, Any]:
        def of(kind: str) -> list[dict[str, str]]:
            return [{"item": c.item, "detail": c.detail} for c in self.changes if c.kind == kind]

        return {
            "added": of("add"),
            "changed": of("change"),
            "removed": of("remove"),
            "reordered": self.reordered,
        }


def shown(value: Any) -> str:
    """A value as a diff line shows it: JSON, cut short (never used for sensitive values)."""
    if value is None:
        return "(no value)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 3] + "..."


def order_changed(before: list[Any], after: list[Any]) -> bool:
    """Whether the keys present in both lists come in another order."""
    common = set(before) & set(after)
    return [k for k in before if k in common] != [k for k in after if k in common]
