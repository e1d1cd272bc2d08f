"""The table ``bench/dispatch.py`` prints: each figure beside its goal and its floor or peer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Row:
    figure: str
    value: float
    unit: str
    goal: float | None = None
    floor: float | None = None
    floor_label: str = ""


def print_table(rows: Sequence[Row]) -> None:
    print()
    print(
        f"{'figure':<46} {'measured':>11} {'goal':>9} {'/goal':>7}   "
        f"{'floor / peer':<30} {'value':>10} {'/floor':>7}"
    )
    for row in rows:
        measured = f"{row.value:.2f} {row.unit}"
        goal = f"{row.goal:g} {row.unit}" if row.goal is not None else "-"
        ratio = f"{row.value / row.goal:.2f}x" if row.goal else "-"
        floor = f"{row.floor:.2f} {row.unit}" if row.floor is not None else "-"
        vs_floor = f"{row.value / row.floor:.2f}x" if row.floor else "-"
        print(
            f"{row.figure:<46} {measured:>11} {goal:>9} {ratio:>7}   "
            f"{row.floor_label or '-':<30} {floor:>10} {vs_floor:>7}"
        )
