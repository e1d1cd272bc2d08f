"""Request parsing and the runner's answer to bad input: exit code 2 and a clear message."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from octo_runner import PROTOCOL_VERSION
from octo_runner.errors import BadInputError
from octo_runner.protocol import Variable, parse_request

from .conftest import RunRunner
from .support import make_request, plain_python, script, variable

SECRET = "do-not-echo-me-7731"


def test_parse_a_full_request() -> None:
    request = parse_request(
        json.dumps(
            {
                "protocol": 1,
                "command": "run-script",
                "arguments": {"syntax": "bash", "body": "true"},
                "variables": [variable("A", "1"), variable("S", "x", True), variable("A", "2")],
                "work_dir": "/tmp/w",
                "context": {"task_id": "t1"},
                "future_field": 1,
            }
        ).encode()
    )
    assert request.command == "run-script"
    assert request.variables[1] == Variable("S", "x", True)
    assert request.variable_map() == {"A": "2", "S": "x"}  # a later duplicate wins
    assert request.sensitive_values() == ["x"]
    assert request.context == {"task_id": "t1"}
    assert request.ignored_fields == ("future_field",)


def _doc(**changes: Any) -> bytes:
    document: dict[str, Any] = {"protocol": 1, "command": "run-script", "arguments": {}}
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "no request on stdin"),
        (b"   \n", "no request on stdin"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"command": "run-script"}).encode(), "unsupported protocol version None"),
        (_doc(protocol=2), "unsupported protocol version 2"),
        (_doc(protocol=True), "unsupported protocol version True"),
        (_doc(command=""), "'command' must be a non-empty string"),
        (_doc(command=5), "'command' must be a non-empty string"),
        (_doc(arguments=[]), "'arguments' must be a JSON object"),
        (_doc(context="x"), "'context' must be a JSON object"),
        (_doc(work_dir=""), "'work_dir' must be a non-empty string"),
        (_doc(variables={}), "'variables' must be a list"),
        (_doc(variables=["x"]), "variables[0] must be an object"),
        (_doc(variables=[{"name": "", "value": "v"}]), "variables[0].name"),
        (_doc(variables=[{"name": "A", "value": 5}]), "variables[0].value (A) must be a string"),
        (_doc(variables=[{"name": "A", "value": "v", "sensitive": "yes"}]), "sensitive (A)"),
        (_doc(variables=[{"name": "A", "value": "v", "secret": True}]), "unknown field(s) secret"),
    ],
)
def test_bad_requests(data: bytes, fragment: str) -> None:
    with pytest.raises(BadInputError) as caught:
        parse_request(data)
    assert fragment in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_value_of_the_wrong_type_is_not_echoed() -> None:
    data = _doc(variables=[{"name": "Password", "value": [SECRET], "sensitive": True}])
    with pytest.raises(BadInputError) as caught:
        parse_request(data)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (b"this is not json", "not valid JSON"),
        ({"protocol": 99, "command": "run-script"}, "unsupported protocol version 99"),
        ({"protocol": 1, "command": "dance"}, "unknown command 'dance'"),
        (
            {"protocol": 1, "command": "run-script", "arguments": script("bash", "true")},
            "needs 'work_dir'",
        ),
        (
            {
                "protocol": 1,
                "command": "run-script",
                "work_dir": "/tmp",
                "arguments": script("cobol", "x"),
            },
            "'syntax' must be one of bash, sh, python, pwsh",
        ),
        (
            {
                "protocol": 1,
                "command": "run-script",
                "work_dir": "/tmp",
                "arguments": {"syntax": "bash"},
            },
            "'body' must be a string",
        ),
        (
            {"protocol": 1, "command": "health-check", "arguments": {"paths": {"work": 3}}},
            "paths.work must be a directory path",
        ),
    ],
)
def test_runner_rejects_bad_input_with_exit_code_2(
    run_runner: RunRunner, document: dict[str, Any] | bytes, fragment: str
) -> None:
    done = run_runner(document)
    assert done.exit_code == 2
    assert fragment in done.stderr
    assert done.stderr.startswith("octo-runner: error: ")
    assert any(fragment in message for message in done.logs("error"))
    assert done.result["exit_code"] == 2
    assert done.result["success"] is False
    assert fragment in done.result["message"]


def test_bad_input_from_a_request_with_secrets_does_not_leak_them(
    run_runner: RunRunner, work_dir: Path
) -> None:
    document = make_request(
        "run-script",
        script("cobol", SECRET),
        work_dir=work_dir,
        variables=[variable("S", SECRET, True)],
    )
    done = run_runner(document)
    assert done.exit_code == 2
    assert SECRET not in done.raw_stdout and SECRET not in done.stderr


def test_unknown_request_fields_are_ignored_with_a_note(
    run_runner: RunRunner, work_dir: Path
) -> None:
    done = run_runner(make_request("run-script", script("sh", "true"), work_dir=work_dir, extra=1))
    assert done.exit_code == 0
    assert "ignoring unknown request field 'extra'" in done.logs("verbose")


def test_version_and_usage(runner_pyz: Path) -> None:
    version = subprocess.run(
        [plain_python(), "-I", str(runner_pyz), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == f"octo-runner 0.1.0 (protocol {PROTOCOL_VERSION})"
    wrong = subprocess.run(
        [plain_python(), "-I", str(runner_pyz), "--bogus"], capture_output=True, text=True
    )
    assert wrong.returncode == 2
    assert "usage: octo-runner" in wrong.stderr
    assert wrong.stdout == ""
