"""A sibling module: wheels and package folders import their own modules."""

from __future__ import annotations

from pathlib import Path

#: a data file shipped inside the package, read by path like a development install would
TEMPLATE = (Path(__file__).with_name("template.txt")).read_text(encoding="utf-8").strip()


def greeting(name: str) -> str:
    return TEMPLATE.format(name=name)
