"""A sibling module: a bundle's commands import their own package's modules."""

from __future__ import annotations


def shout(text: str) -> str:
    return text.upper()
