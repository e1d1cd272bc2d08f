"""File patterns relative to a release folder: ``*``, ``?``, ``[...]`` and ``**``.

``*`` and ``?`` match within one path segment (dot files included), ``**`` as a whole
segment matches any number of folders (none too: ``**/*.txt`` matches ``a.txt``), and a
trailing ``**`` everything below. Matching is case-sensitive; ``\\`` is read as ``/`` so a
pattern written on Windows works. Only regular files are matched: symbolic links are not
followed, so a pattern never reaches outside the folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

from ..errors import BadInputError


def normalise(pattern: str, what: str) -> str:
    """``pattern`` with ``/`` separators; ``BadInputError`` if it could leave the folder."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise BadInputError(f"{what}: file patterns must be non-empty strings")
    text = pattern.strip().replace("\\", "/")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if text.startswith("/") or re.match(r"[A-Za-z]:", text) or ".." in parts or not parts:
        raise BadInputError(
            f"{what}: the pattern {pattern!r} must stay inside the package",
            hint="write it relative to the package root, e.g. config/*.json or **/*.conf",
        )
    return "/".join(parts)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A regular expression for a normalised pattern, matched against ``a/b/c`` paths."""
    parts = pattern.split("/")
    out: list[str] = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        out.append(_segment(part) + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _segment(part: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(part):
        char = part[index]
        if char == "*":
            while index + 1 < len(part) and part[index + 1] == "*":
                index += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = _class_end(part, index)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = part[index + 1 : end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                for special in ("\\", "^", "[", "]"):
                    body = body.replace(special, "\\" + special)
                out.append(f"[{'^/' if negate else ''}{body}]")
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def _class_end(part: str, start: int) -> int:
    index = start + 1
    if index < len(part) and part[index] in ("!", "^"):
        index += 1
    if index < len(part) and part[index] == "]":
        index += 1
    return part.find("]", index)


def files_below(root: str) -> list[str]:
    """Every regular file below ``root`` as a sorted ``a/b/c`` path (links not followed)."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in files:
            full = os.path.join(folder, name)
            if os.path.isfile(full) and not os.path.islink(full):
                found.append(prefix + name)
    return sorted(found)


def match(root: str, patterns: Sequence[str], what: str) -> tuple[list[str], list[str]]:
    """Files below ``root`` matching any of ``patterns``, and the patterns matching none."""
    compiled = [(p, compile_pattern(normalise(p, what))) for p in patterns]
    if not compiled:
        return [], []
    matched: list[str] = []
    used: set[str] = set()
    for path in files_below(root):
        hits = [pattern for pattern, regex in compiled if regex.match(path)]
        if hits:
            matched.append(path)
            used.update(hits)
    return matched, [p for p, _ in compiled if p not in used]


def validate(patterns: Iterable[str], what: str) -> list[str]:
    """Check every pattern up front (before anything is extracted)."""
    for pattern in patterns:
        normalise(pattern, what)
    return list(patterns)
