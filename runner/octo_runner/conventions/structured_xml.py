"""Structured variable replacement in XML, editing only the replaced values in place.

Two ways to name what to replace:

- a key path from the root element, parts joined by ``:`` or ``.``: ``config:db:host``
  replaces the text of ``<config><db><host>``; a last part ``@name`` replaces an attribute:
  ``config:db:@timeout``. Element and attribute names are compared without their namespace
  prefix, case-insensitively. Only elements without child elements have their text
  replaced (a self-closing ``<host/>`` becomes ``<host>value</host>``); a container that
  matches is left alone with a warning.
- an absolute XPath subset, for elements that differ only by an attribute (the .NET
  ``appSettings`` pattern): ``/configuration/appSettings/add[@key='Port']/@value``. Steps are
  element names or ``*``, each with any number of ``[@attr='value']`` and ``[n]`` (1-based)
  predicates; the last step may be ``@attr`` or ``text()``. Only existing attributes are
  replaced.

The document is parsed with expat (entity declarations are refused) to find byte positions;
every other byte of the file is kept as it was: formatting, comments, declaration, doctype.
Values are escaped and written in the document's declared encoding (UTF-8 by default;
UTF-16 and UTF-32 files are not supported).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.parsers import expat

from .structured import StructuredError

if TYPE_CHECKING:
    from .structured import Matcher

_NAME = re.compile(rb"[^\s/>]*")
_ATTRIBUTE = re.compile(rb"""([^\s=/<>"']+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_ENCODING = re.compile(rb"""\A(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)""")
_STEP = re.compile(r"(?P<name>\*|[^\[\]@/()]+)(?P<predicates>(?:\[[^\]]*\])*)\Z")
_PREDICATE = re.compile(
    r"""\[\s*(?:@(?P<attr>[^=\s\]]+)\s*=\s*(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)")"""
    r"""|(?P<index>[1-9][0-9]*))\s*\]"""
)


@dataclass
class _Element:
    name: str
    start: int
    tag_end: int
    end: int = -1  # index of "</" of the end tag; -1 for a self-closing element
    children: list[_Element] = field(default_factory=list)
    attributes: dict[str, tuple[int, int, bytes]] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)

    @property
    def local(self) -> str:
        return _local(self.name)


def _local(name: str) -> str:
    return name.rpartition(":")[2]


def replace_xml(data: bytes, matcher: Matcher) -> tuple[bytes, list[str]]:
    """Apply ``matcher`` to an XML document; return the new bytes and the variables used."""
    encoding = _encoding(data)
    root = _parse(data)
    edits: dict[tuple[int, int], bytes] = {}
    keys: list[str] = []

    def text_edit(element: _Element, name: str, value: str) -> None:
        if element.children:
            matcher.notes.append(f"{name} names an element with child elements: not replaced")
            return
        escaped = _escape(value, None).encode(encoding, "xmlcharrefreplace")
        if element.end < 0:
            closing = b"</" + element.name.encode(encoding) + b">"
            edits.setdefault((element.tag_end - 2, element.tag_end), b">" + escaped + closing)
        else:
            edits.setdefault((element.tag_end, element.end), escaped)
        keys.append(name)

    def attribute_edit(element: _Element, attribute: str, name: str, value: str) -> None:
        begin, end, quote = element.attributes[attribute]
        escaped = _escape(value, quote).encode(encoding, "xmlcharrefreplace")
        edits.setdefault((begin, end), escaped)
        keys.append(name)

    def walk(element: _Element, path: list[str]) -> None:
        here = [*path, element.local]
        for attribute in element.attributes:
            hit = matcher.find([*here, "@" + _local(attribute)])
            if hit is not None:
                attribute_edit(element, attribute, *hit)
        hit = matcher.find(here)
        if hit is not None:
            text_edit(element, *hit)
        for child in element.children:
            walk(child, here)

    walk(root, [])
    for name, value in matcher.by_name.values():
        if name.startswith("/") and not name.startswith("//"):
            for element, attribute in _xpath(root, name):
                if attribute is None:
                    text_edit(element, name, value)
                else:
                    attribute_edit(element, attribute, name, value)
    result = data
    for (begin, end), replacement in sorted(edits.items(), reverse=True):
        result = result[:begin] + replacement + result[end:]
    return result, list(dict.fromkeys(keys))


def _encoding(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or data[:2] in (
        b"<\x00",
        b"\x00<",
    ):
        raise StructuredError("UTF-16 or UTF-32 XML is not supported", hint="save it as UTF-8")
    match = _ENCODING.match(data)
    name = match.group(1).decode("ascii") if match else "utf-8"
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        raise StructuredError(f"unknown XML encoding {name!r}") from None
    if canonical.startswith(("utf-16", "utf-32")):
        raise StructuredError("UTF-16 or UTF-32 XML is not supported", hint="save it as UTF-8")
    return canonical


def _parse(data: bytes) -> _Element:
    parser = expat.ParserCreate()
    stack: list[_Element] = []
    roots: list[_Element] = []

    def start(name: str, attributes: dict[str, str]) -> None:
        index = parser.CurrentByteIndex
        element = _Element(name, index, _tag_end(data, index), values=attributes)
        named = _NAME.match(data, index + 1)
        offset = named.end() if named else index + 1
        tag = data[offset : element.tag_end]
        for match in _ATTRIBUTE.finditer(tag):
            group = 2 if match.group(2) is not None else 3
            quote = b'"' if group == 2 else b"'"
            attribute = match.group(1).decode("utf-8", "replace")
            if attribute == "xmlns" or attribute.startswith("xmlns:"):
                continue
            element.attributes[attribute] = (
                offset + match.start(group),
                offset + match.end(group),
                quote,
            )
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(name: str) -> None:
        element = stack.pop()
        if data[element.tag_end - 2 : element.tag_end] != b"/>":
            element.end = parser.CurrentByteIndex

    def entity(*args: object) -> None:
        raise StructuredError(
            "the document declares entities, which are not allowed here",
            hint="remove the <!ENTITY> declarations",
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = entity
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise StructuredError(
            f"not well-formed XML: {expat.ErrorString(exc.code)} at line {exc.lineno} "
            f"column {exc.offset + 1}",
            hint="fix the file, or leave it out of structured_variables",
        ) from exc
    return roots[0]


def _tag_end(data: bytes, start: int) -> int:
    """Index just after the ``>`` closing the tag that starts at ``start``."""
    quote = 0
    for index in range(start + 1, len(data)):
        byte = data[index]
        if quote:
            if byte == quote:
                quote = 0
        elif byte in (0x22, 0x27):
            quote = byte
        elif byte == 0x3E:
            return index + 1
    return len(data)


def _escape(value: str, quote: bytes | None) -> str:
    text = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if quote is None:
        return text
    text = text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return text.replace('"', "&quot;") if quote == b'"' else text.replace("'", "&apos;")


def _split_path(path: str) -> list[str] | None:
    """``/a/b[@k='x/y']/@c`` -> ``["a", "b[@k='x/y']", "@c"]`` (slashes in quotes kept)."""
    steps: list[str] = []
    current: list[str] = []
    quote = ""
    for char in path[1:]:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "/":
            steps.append("".join(current))
            current = []
            continue
        current.append(char)
    steps.append("".join(current))
    return None if quote or "" in steps else steps


def _xpath(root: _Element, path: str) -> list[tuple[_Element, str | None]]:
    """Targets of an absolute XPath-subset ``path``: (element, attribute or None)."""
    steps = _split_path(path)
    if not steps:
        return []
    last: str | None = None
    if steps[-1].startswith("@") or steps[-1] == "text()":
        last = steps.pop()
    current: list[_Element] = []
    for depth, step in enumerate(steps):
        candidates = [root] if depth == 0 else [c for e in current for c in e.children]
        selected = _select(candidates, step)
        if selected is None:
            return []
        current = selected
    if last is None or last == "text()":
        return [(element, None) for element in current]
    wanted = _local(last[1:])
    return [
        (element, attribute)
        for element in current
        for attribute in element.attributes
        if _local(attribute) == wanted
    ]


def _select(candidates: list[_Element], step: str) -> list[_Element] | None:
    match = _STEP.match(step.strip())
    if match is None:
        return None
    name = match.group("name").strip()
    selected = [e for e in candidates if name == "*" or e.local == _local(name)]
    predicates = match.group("predicates")
    position = 0
    while position < len(predicates):
        predicate = _PREDICATE.match(predicates, position)
        if predicate is None:
            return None
        position = predicate.end()
        if predicate.group("index"):
            index = int(predicate.group("index")) - 1
            selected = selected[index : index + 1]
            continue
        wanted = predicate.group("sq")
        wanted = predicate.group("dq") if wanted is None else wanted
        selected = [e for e in selected if _attribute_value(e, predicate.group("attr")) == wanted]
    return selected


def _attribute_value(element: _Element, name: str) -> str | None:
    for attribute, value in element.values.items():
        if _local(attribute) == _local(name):
            return value
    return None
