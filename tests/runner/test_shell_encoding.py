"""Service message values a shell script sends: bash encodes them with builtins (short
values) or base64 (long ones); sh always with base64. Every value must arrive unchanged."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from .conftest import RunRunner
from .support import make_request, script

#: lengths around the 3-byte groups and the builtin/base64 boundary, bytes > 127, quotes,
#: brackets, newlines and tabs
VALUES = [
    "",
    "a",
    "ab",
    "abc",
    "abcd",
    "héllo wörld €",
    'it\'s [x] "q" $HOME `cmd` %s\\n',
    "tab\there\nnext line",
    "ü" * 96,  # 192 bytes: the longest encoded by builtins
    "x" * 193,
    "long ✓ " * 60,
]


def _body(values: list[str]) -> str:
    lines = ["set -eu"]
    for index, value in enumerate(values):
        quoted = "'" + value.replace("'", "'\\''") + "'"
        lines.append(f"set_octovariable V{index} {quoted}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("syntax", ["bash", "sh"])
def test_output_variables_arrive_unchanged(
    run_runner: RunRunner, work_dir: Path, syntax: str
) -> None:
    done = run_runner(make_request("run-script", script(syntax, _body(VALUES)), work_dir=work_dir))
    assert done.exit_code == 0, done.events
    assert [(v["name"], v["value"]) for v in done.of_type("output-variable")] == [
        (f"V{index}", value) for index, value in enumerate(VALUES)
    ]


def test_bash_encodes_as_base64_does(run_runner: RunRunner, work_dir: Path) -> None:
    lines = [
        f"encode_servicemessagevalue '{v}'; echo" for v in VALUES if "'" not in v and "\n" not in v
    ]
    body = "set -eu\n" + "\n".join(lines) + "\n"
    done = run_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    assert done.exit_code == 0, done.events
    expected = [
        base64.b64encode(v.encode()).decode() for v in VALUES if "'" not in v and "\n" not in v
    ]
    assert [line for line in done.logs(stream="stdout") if line] == [e for e in expected if e]


def test_a_sensitive_value_is_masked(run_runner: RunRunner, work_dir: Path) -> None:
    body = 'set_octovariable Token "tök en" -sensitive\nmask_octovalue other\necho "tök en other"\n'
    done = run_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    assert done.exit_code == 0, done.events
    assert done.of_type("output-variable") == [
        {"type": "output-variable", "name": "Token", "value": "tök en", "sensitive": True}
    ]
    assert "tök en" not in "".join(done.logs(stream="stdout"))
    assert "other" not in "".join(done.logs(stream="stdout"))
