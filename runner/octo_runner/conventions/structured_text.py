"""Structured variable replacement in line-based formats: Java properties and INI.

Both are edited line by line: only the value of a replaced key changes; comments, blank
lines, key spelling, separators and line endings stay as they were.

- ``.properties``: a key such as ``server.port`` is named by the variable ``server.port``
  or ``server:port``. Keys and values follow ``java.util.Properties``: ``=``, ``:`` or
  white space separates them, ``#`` and ``!`` start comments, a trailing backslash continues
  a value on the next line (the continuation lines of a replaced value are removed). The new
  value is escaped (backslash, line breaks, tab, a leading space; characters beyond
  Latin-1 as ``\\uXXXX`` in a file that is not UTF-8).
- INI (``.ini``, ``.cfg``): ``[Section]`` then ``key = value`` or ``key: value``; the
  variable ``Section:Key`` (or ``Section.Key``) names it, and a key before any section is
  named by itself. ``#`` and ``;`` start comment lines. As in Python's ``configparser``,
  indented lines after a key continue its value; they are replaced with the value, whose
  own line breaks become indented continuation lines.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .structured import Matcher

_INI_KEY = re.compile(
    r"(?P<prefix>(?P<key>[^\s=:\[;#][^=:]*?)\s*[=:][ \t]*)(?P<value>[^\r\n]*)(?P<eol>\r?\n|\r)?\Z"
)
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}
_UNESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _eol(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return line[-1] if line.endswith(("\n", "\r")) else ""


# ---- properties -----------------------------------------------------------------------------


def replace_properties(text: str, matcher: Matcher, encoding: str) -> tuple[str, list[str]]:
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    keys: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        body = line.lstrip(" \t\f")
        last = index
        if body.strip() and body[0] not in "#!":
            while _continues(lines[last]) and last + 1 < len(lines):
                last += 1
        else:
            out.append(line)
            index += 1
            continue
        key, value_start = _split_property(line)
        hit = matcher.find(key.split(".")) if key else None
        if hit is None:
            out.extend(lines[index : last + 1])
        else:
            escaped = escape_property(hit[1], latin1=encoding != "utf-8")
            out.append(line[:value_start] + escaped + _eol(lines[last]))
            keys.append(hit[0])
        index = last + 1
    return "".join(out), keys


def _continues(line: str) -> bool:
    content = line.rstrip("\r\n")
    trailing = len(content) - len(content.rstrip("\\"))
    return trailing % 2 == 1


def _split_property(line: str) -> tuple[str, int]:
    """The unescaped key of a properties line and where its value starts."""
    position = len(line) - len(line.lstrip(" \t\f"))
    key: list[str] = []
    end = len(line.rstrip("\r\n"))
    while position < end:
        char = line[position]
        if char == "\\" and position + 1 < end:
            following = line[position + 1]
            if following == "u" and re.match(r"[0-9A-Fa-f]{4}", line[position + 2 : position + 6]):
                key.append(chr(int(line[position + 2 : position + 6], 16)))
                position += 6
                continue
            key.append(_UNESCAPES.get(following, following))
            position += 2
            continue
        if char in "=: \t\f":
            break
        key.append(char)
        position += 1
    while position < end and line[position] in " \t\f":
        position += 1
    if position < end and line[position] in "=:":
        position += 1
        while position < end and line[position] in " \t\f":
            position += 1
    return "".join(key), position


def escape_property(value: str, *, latin1: bool) -> str:
    out: list[str] = []
    for index, char in enumerate(value):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char == " " and index == 0:
            out.append("\\ ")
        elif latin1 and ord(char) > 0xFF:
            for unit in _utf16_units(char):
                out.append(f"\\u{unit:04x}")
        else:
            out.append(char)
    return "".join(out)


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


# ---- INI ------------------------------------------------------------------------------------


def replace_ini(text: str, matcher: Matcher, encoding: str) -> tuple[str, list[str]]:
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    keys: list[str] = []
    section: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        stripped = line.strip()
        if stripped.startswith("[") and "]" in stripped:
            section = stripped[1 : stripped.index("]")].strip()
        match = None if line[:1] in (" ", "\t") else _INI_KEY.match(line)
        if match is None or stripped.startswith("["):
            out.append(line)
            continue
        key = match.group("key").strip()
        hit = matcher.find([section, key] if section is not None else [key])
        if hit is None:
            out.append(line)
            continue
        while index < len(lines) and lines[index][:1] in (" ", "\t") and lines[index].strip():
            index += 1  # the old value's continuation lines
        eol = match.group("eol") or ""
        value_lines = hit[1].replace("\r\n", "\n").replace("\r", "\n").split("\n")
        between = eol or "\n"
        for number, part in enumerate(value_lines):
            start = match.group("prefix") if number == 0 else "    "
            out.append(start + part + (between if number < len(value_lines) - 1 else eol))
        keys.append(hit[0])
    return "".join(out), keys
