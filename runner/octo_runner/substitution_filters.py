"""The filters ``#{Name | Filter}`` can apply, by case-insensitive name.

Each filter takes the value (text) and returns text. Names follow Octopus where it has one
(``ToBase64`` is an alias of ``Base64``). Filters take no arguments.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable

from .errors import SubstitutionError


def _from_base64(value: str) -> str:
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise SubstitutionError(
            "FromBase64 filter: the value is not base64 of UTF-8 text",
            hint="only apply FromBase64 to base64-encoded values",
        ) from exc


def _xml_escape(value: str) -> str:
    from xml.sax.saxutils import escape  # imported on use: it costs the runner's start time

    return escape(value, {'"': "&quot;", "'": "&apos;"})


def _html_escape(value: str) -> str:
    import html

    return html.escape(value, quote=True)


def _uri_escape(value: str, safe: str) -> str:
    import urllib.parse

    return urllib.parse.quote(value, safe=safe)


_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "ToUpper": str.upper,
    "ToLower": str.lower,
    "Trim": str.strip,
    "JsonEscape": lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    "XmlEscape": _xml_escape,
    "HtmlEscape": _html_escape,
    "UriEscape": lambda v: _uri_escape(v, "/:?#[]@!$&'()*+,;="),
    "UriDataEscape": lambda v: _uri_escape(v, ""),
    "Base64": lambda v: base64.b64encode(v.encode("utf-8")).decode("ascii"),
    "ToBase64": lambda v: base64.b64encode(v.encode("utf-8")).decode("ascii"),
    "FromBase64": _from_base64,
}

#: Lower-cased filter name -> canonical name.
FILTERS: dict[str, str] = {name.lower(): name for name in _FUNCTIONS}


def apply_filters(value: str, filters: Iterable[str]) -> str:
    for name in filters:
        value = _FUNCTIONS[FILTERS[name.lower()]](value)
    return value
