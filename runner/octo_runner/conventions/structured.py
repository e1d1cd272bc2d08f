"""Structured variable replacement: a variable named after a key replaces that key's value.

A key is named by its path from the top, with ``:`` or ``.`` between the parts:
``Logging:Level`` and ``Logging.Level`` both name ``{"Logging": {"Level": ...}}``. Names
are matched case-insensitively; when both forms exist, the ``:`` form wins.

- JSON (``.json``): object keys and array indexes (``Servers:0:Name``). The new value keeps
  the old one's type where it parses as that type (``"8080"`` into a number field stays a
  number, ``"true"`` into a boolean a boolean); a null takes a JSON number, boolean or
  null, else text; an object or array is replaced by a variable holding JSON of the same
  kind, else by text. The file is re-indented as it was (indent detected).
- XML (``.xml``, ``.config``): see ``structured_xml``.
- Java properties (``.properties``) and INI (``.ini``, ``.cfg``): see ``structured_text``.

Other extensions are recognised by their first character (``{``/``[`` is JSON, ``<`` XML) or
skipped with a warning. A file that does not parse fails the deployment, naming the file
and the place. Only the names of replaced keys are logged, never values.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import RunnerError
from ..protocol import EventWriter
from . import globs
from .files import describe_os_error, write_atomic
from .substitute import listing

WHAT = "structured_variables"
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")


class StructuredError(RunnerError):
    """A file matched for structured replacement cannot be parsed in its format."""


class Matcher:
    """Finds the variable that names a key path (``["Logging", "Level"]``)."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.by_name = {name.lower(): (name, value) for name, value in variables.items()}
        self.notes: list[str] = []  # warnings a format has for the current file

    def find(self, path: Sequence[str]) -> tuple[str, str] | None:
        for separator in (":", "."):
            hit = self.by_name.get(separator.join(path).lower())
            if hit is not None:
                return hit
        return None


def replace_in_files(
    root: str, patterns: Sequence[str], variables: Mapping[str, str], events: EventWriter
) -> dict[str, list[str]]:
    """Replace keys in every file below ``root`` matching ``patterns``; return the changed
    files with the variables applied to each."""
    matched, unmatched = globs.match(root, patterns, WHAT)
    for pattern in unmatched:
        events.log("warning", f"No file matches the structured variables pattern {pattern!r}")
    matcher = Matcher(variables)
    changed: dict[str, list[str]] = {}
    for rel in matched:
        keys = _replace_one(root, rel, matcher, events)
        if keys:
            changed[rel] = keys
            events.log("info", f"Replaced {len(keys)} key(s) in {rel}" + listing(keys))
    events.log("info", f"Structured variables: {len(changed)} of {len(matched)} file(s) changed")
    return changed


def _replace_one(root: str, rel: str, matcher: Matcher, events: EventWriter) -> list[str]:
    path = os.path.join(root, *rel.split("/"))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RunnerError(f"cannot read {rel}: {describe_os_error(exc)}") from exc
    kind = file_kind(rel, data)
    if kind is None:
        events.log(
            "warning",
            f"{rel}: not a format structured variables support (JSON, XML, .properties, "
            "INI): skipped",
        )
        return []
    matcher.notes.clear()
    try:
        new_data, keys = replace_bytes(kind, data, matcher)
    except StructuredError as exc:
        raise StructuredError(f"{rel}: {exc.message}", hint=exc.hint) from exc
    for note in matcher.notes:
        events.log("warning", f"{rel}: {note}")
    if keys and new_data != data:
        try:
            write_atomic(path, new_data)
        except OSError as exc:
            raise RunnerError(f"cannot write {rel}: {describe_os_error(exc)}") from exc
    return keys


def file_kind(name: str, data: bytes) -> str | None:
    """``json``, ``xml``, ``properties``, ``ini`` or ``None``, by extension, then content."""
    extension = os.path.splitext(name)[1].lower()
    known = {".json": "json", ".xml": "xml", ".config": "xml", ".properties": "properties"}
    if extension in known:
        return known[extension]
    if extension in (".ini", ".cfg"):
        return "ini"
    start = data.lstrip(codecs.BOM_UTF8 + b" \t\r\n")[:1]
    return {b"{": "json", b"[": "json", b"<": "xml"}.get(start)


def replace_bytes(kind: str, data: bytes, matcher: Matcher) -> tuple[bytes, list[str]]:
    """Apply ``matcher`` to a file's bytes in format ``kind``."""
    if kind == "xml":
        from .structured_xml import replace_xml

        return replace_xml(data, matcher)
    bom = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
    body = data[len(bom) :]
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        if kind == "json":
            raise StructuredError("not UTF-8 text, as JSON must be") from None
        text, encoding = body.decode("latin-1"), "latin-1"
    if kind == "json":
        new_text, keys = replace_json(text, matcher)
    else:
        from .structured_text import replace_ini, replace_properties

        replacer = replace_properties if kind == "properties" else replace_ini
        new_text, keys = replacer(text, matcher, encoding)
    return bom + new_text.encode(encoding), keys


# ---- JSON ---------------------------------------------------------------------------------


def replace_json(text: str, matcher: Matcher) -> tuple[str, list[str]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StructuredError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint="fix the file, or leave it out of structured_variables (comments are not JSON)",
        ) from exc
    keys: list[str] = []
    _walk_json(document, [], matcher, keys)
    if not keys:
        return text, []
    indent = _json_indent(text)
    dumped = json.dumps(document, indent=indent, ensure_ascii=False)
    return dumped + ("\n" if text.endswith("\n") else ""), keys


def _walk_json(node: Any, path: list[str], matcher: Matcher, keys: list[str]) -> None:
    if isinstance(node, dict):
        entries: list[tuple[Any, Any]] = list(node.items())
    elif isinstance(node, list):
        entries = list(enumerate(node))
    else:
        return
    for key, value in entries:
        here = [*path, str(key)]
        hit = matcher.find(here)
        if hit is None:
            _walk_json(value, here, matcher, keys)
            continue
        node[key] = json_value(value, hit[1])
        keys.append(hit[0])


def json_value(old: Any, text: str) -> Any:
    """``text`` as the JSON value replacing ``old``: same type where it parses, else text."""
    stripped = text.strip()
    if isinstance(old, bool):
        lowered = stripped.lower()
        return lowered == "true" if lowered in ("true", "false") else text
    if isinstance(old, (int, float)):
        number = _number(stripped)
        return text if number is None else number
    if old is None or isinstance(old, (dict, list)):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            return text
        if old is None:
            number_like = isinstance(parsed, (bool, int, float)) or parsed is None
            return parsed if number_like else text
        return parsed if isinstance(parsed, type(old)) else text
    return text


def _number(text: str) -> int | float | None:
    if _INT.match(text):
        return int(text)
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _json_indent(text: str) -> int | str | None:
    """The indent the file uses (its first indented key), or None for one-line JSON."""
    if "\n" not in text.strip():
        return None
    match = re.search(r"\n([ \t]+)[\"\[{\]}0-9tfn-]", text)
    if match is None:
        return 2
    indent = match.group(1)
    return indent if "\t" in indent else len(indent)
