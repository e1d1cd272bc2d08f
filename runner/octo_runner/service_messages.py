"""Parse and format service messages: the ``##octo[...]`` lines scripts print to talk back.

The grammar (shared with Octopus's ``##octopus[...]`` form, which is accepted too)::

    line      = ws* ("##octo[" | "##octopus[") name (ws+ attribute)* ws* "]" ws*
    name      = letter (letter | digit | "-" | "_")*
    attribute = key "=" "'" base64 "'"

Every attribute value is base64 of UTF-8 text, so values can hold quotes, brackets and
newlines. A line that starts like a service message but breaks the grammar raises
``MalformedServiceMessage`` (the runner logs a warning and goes on); any other line is plain
output. The appliance uses this module too, for the logs of steps it runs itself.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import RunnerError

PREFIXES = ("##octo[", "##octopus[")

_MESSAGE = re.compile(
    r"##(?:octo|octopus)\[(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?P<attrs>(?:\s+[^\]]*)?)\]\s*\Z"
)
_ATTRIBUTE = re.compile(r"\s*(?P<key>[A-Za-z][A-Za-z0-9_.-]*)='(?P<value>[^']*)'")


class MalformedServiceMessage(RunnerError):
    """A line starts with ``##octo[`` but is not a well-formed service message."""


@dataclass(frozen=True)
class ServiceMessage:
    """One parsed message: its name and its decoded attribute values."""

    name: str
    attributes: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.attributes.get(key, default)


def looks_like_service_message(line: str) -> bool:
    return line.lstrip().startswith(PREFIXES)


def parse_service_message(line: str) -> ServiceMessage | None:
    """Return the message on ``line``, ``None`` for plain output; raise if it is malformed."""
    if not looks_like_service_message(line):
        return None
    text = line.strip()
    match = _MESSAGE.match(text)
    if match is None:
        raise MalformedServiceMessage(
            f"malformed service message: {_preview(text)}",
            hint="the form is ##octo[name key='base64' ...]",
        )
    return ServiceMessage(match["name"], _parse_attributes(match["name"], match["attrs"]))


def format_service_message(
    name: str, attributes: Mapping[str, str] | None = None, *, prefix: str = "octo"
) -> str:
    """Return the line a script prints to send ``name`` with ``attributes`` (base64-encoded)."""
    parts = [f"##{prefix}[{name}"]
    for key, value in (attributes or {}).items():
        parts.append(f" {key}='{encode_value(value)}'")
    return "".join(parts) + "]"


def encode_value(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def _parse_attributes(name: str, text: str) -> dict[str, str]:
    attributes: dict[str, str] = {}
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _ATTRIBUTE.match(text, position)
        if match is None:
            raise MalformedServiceMessage(
                f"malformed attributes in service message {name!r}: {_preview(text[position:])}",
                hint="write each attribute as key='base64 of the UTF-8 value'",
            )
        key = match["key"]
        if key in attributes:
            raise MalformedServiceMessage(f"service message {name!r} repeats attribute {key!r}")
        attributes[key] = _decode(name, key, match["value"])
        position = match.end()
    return attributes


def _decode(name: str, key: str, value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise MalformedServiceMessage(
            f"attribute {key!r} of service message {name!r} is not base64 of UTF-8 text",
            hint="encode attribute values with base64, e.g. printf '%s' \"$v\" | base64",
        ) from exc


def _preview(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
