"""Service-message parsing: both prefixes, base64 attributes, malformed lines."""

from __future__ import annotations

import base64

import pytest
from octo_runner.service_messages import (
    MalformedServiceMessage,
    ServiceMessage,
    format_service_message,
    parse_service_message,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("plain output", None),
        ("", None),
        ("echo ##octo[setVariable]", None),  # only at the start of a line
        ("##octo[stdout-warning]", ServiceMessage("stdout-warning", {})),
        ("##octopus[stdout-default]", ServiceMessage("stdout-default", {})),
        ("  ##octo[stdout-verbose]  \r", ServiceMessage("stdout-verbose", {})),
        (
            f"##octo[setVariable name='{b64('Out')}' value='{b64('a b')}'"
            f" sensitive='{b64('True')}']",
            ServiceMessage("setVariable", {"name": "Out", "value": "a b", "sensitive": "True"}),
        ),
        (
            f"##octopus[setVariable name='{b64('Octopus.X[1]')}' value='{b64('its]')}']",
            ServiceMessage("setVariable", {"name": "Octopus.X[1]", "value": "its]"}),
        ),
        (
            f"##octo[createArtifact path='{b64('/tmp/a b.txt')}' name='{b64('a')}'"
            f" length='{b64('3')}']",
            ServiceMessage("createArtifact", {"path": "/tmp/a b.txt", "name": "a", "length": "3"}),
        ),
        (
            f"##octo[progress percentage='{b64('50')}' message='{b64('héllo ✓')}']",
            ServiceMessage("progress", {"percentage": "50", "message": "héllo ✓"}),
        ),
        (
            f"##octo[mask value='{b64('multi' + chr(10) + 'line')}']",
            ServiceMessage("mask", {"value": "multi\nline"}),
        ),
        ("##octo[resultMessage message='']", ServiceMessage("resultMessage", {"message": ""})),
    ],
)
def test_parse(line: str, expected: ServiceMessage | None) -> None:
    assert parse_service_message(line) == expected


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("##octo[", "malformed service message"),
        ("##octo[]", "malformed service message"),
        ("##octo[ stdout-warning]", "malformed service message"),
        ("##octo[setVariable name='YQ==' trailing", "malformed service message"),
        ("##octo[setVariable name='YQ==']junk", "malformed service message"),
        ("##octo[setVariable name=YQ==]", "malformed attributes"),
        ("##octo[setVariable name='YQ==' name='Yg==']", "repeats attribute"),
        ("##octo[setVariable name='not base64!']", "not base64"),
        ("##octo[setVariable name='/w==']", "not base64 of UTF-8"),  # byte 0xff
        ('##octopus[progress percentage="NTA="]', "malformed attributes"),
    ],
)
def test_malformed(line: str, fragment: str) -> None:
    with pytest.raises(MalformedServiceMessage) as caught:
        parse_service_message(line)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("prefix", ["octo", "octopus"])
def test_format_round_trips(prefix: str) -> None:
    attributes = {"name": "Out'put", "value": "x='y' ]\n", "sensitive": "False"}
    line = format_service_message("setVariable", attributes, prefix=prefix)
    assert line.startswith(f"##{prefix}[setVariable ")
    assert parse_service_message(line) == ServiceMessage("setVariable", attributes)
