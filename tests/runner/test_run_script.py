"""``run-script`` through the built zipapp: helpers, service messages, exit codes, streaming."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from octo_runner.service_messages import format_service_message

from .conftest import RunRunner, StartRunner
from .support import finish, make_request, old_python, result_event, script, variable

VARIABLES = [
    variable("Greeting", "hello"),
    variable("Octopus.Action[Deploy web].Name", "Deploy web"),
    variable("Tricky", "back\\slash 'quote' \"dq\" $HOME `x` %s\ttab\nsecond line"),
    variable("Ref", "#{Greeting} world"),
    variable("Unicode", "héllo ✓"),
]

BASH_HELPERS = r"""
echo "greeting=$(get_octovariable Greeting)"
echo "ref=$(get_octovariable Ref)"
printf '%s|\n' "$(get_octovariable Tricky)"
echo "missing=[$(get_octovariable Nope)]"
echo "array=${octo_parameters[Greeting]} ${octopus_parameters[Octopus.Action[Deploy web].Name]}"
set_octovariable Port 8080
set_octovariable Token "tok en" -sensitive
echo "token is tok en"
printf 'report\n' > report.txt
new_octoartifact report.txt "Report file"
update_progress 40 "almost there"
write_warning "careful now"
write_verbose "quiet detail"
write_highlight "look"
echo "plain again"
echo "to stderr" >&2
fail_step "could not deploy"
echo "never printed"
"""


def test_bash_helpers(run_runner: RunRunner, work_dir: Path) -> None:
    done = run_runner(
        make_request(
            "run-script", script("bash", BASH_HELPERS), work_dir=work_dir, variables=VARIABLES
        )
    )
    assert done.exit_code == 1
    assert done.result == result_event(1, "could not deploy")
    out = done.logs(stream="stdout")
    assert "greeting=hello" in out
    assert "ref=hello world" in out  # values are evaluated before the script sees them
    assert "back\\slash 'quote' \"dq\" $HOME `x` %s\ttab" in out
    assert "second line|" in out
    assert "missing=[]" in out
    assert "array=hello Deploy web" in out
    assert "token is ********" in out
    assert "never printed" not in out
    assert done.of_type("output-variable") == [
        {"type": "output-variable", "name": "Port", "value": "8080", "sensitive": False},
        {"type": "output-variable", "name": "Token", "value": "tok en", "sensitive": True},
    ]
    [artifact] = done.of_type("artifact")
    assert artifact == {
        "type": "artifact",
        "path": str(work_dir / "report.txt"),
        "name": "Report file",
        "length": 7,
    }
    assert done.of_type("progress") == [
        {"type": "progress", "percentage": 40, "message": "almost there"}
    ]
    assert done.logs("warning", "stdout") == ["careful now"]
    assert done.logs("verbose", "stdout") == ["quiet detail"]
    assert done.logs("highlight", "stdout") == ["look"]
    assert "plain again" in done.logs("info", "stdout")
    assert done.logs("error", "stderr") == ["to stderr"]


def test_octopus_named_helpers(run_runner: RunRunner, work_dir: Path) -> None:
    body = """
echo "v=$(get_octopusvariable Greeting)"
set_octopusvariable Answer 42
set_octopusvariable Hidden s3cr3t -sensitive
echo x > out.log
new_octopusartifact out.log
update_progress 100
echo "##octopus[stdout-warning]"
echo "octopus style warning"
echo "##octopus[stdout-default]"
"""
    done = run_runner(
        make_request("run-script", script("bash", body), work_dir=work_dir, variables=VARIABLES)
    )
    assert done.exit_code == 0, done.events
    assert done.result["success"] is True
    assert "v=hello" in done.logs(stream="stdout")
    assert [(v["name"], v["value"], v["sensitive"]) for v in done.of_type("output-variable")] == [
        ("Answer", "42", False),
        ("Hidden", "s3cr3t", True),
    ]
    assert done.of_type("artifact")[0]["name"] == "out.log"
    assert done.of_type("progress")[0]["percentage"] == 100
    assert done.logs("warning", "stdout") == ["octopus style warning"]


def test_python_script_with_the_octo_module(run_runner: RunRunner, work_dir: Path) -> None:
    body = """
import sys
import octo
print("greeting=" + octo.get_variable("Greeting"))
print("ref=" + octo.variables["Ref"])
print("missing=" + repr(octo.get_variable("Nope")))
print("octopus=" + get_octopusvariable("Unicode"))
print("tricky=" + repr(octo.variables["Tricky"]))
octo.set_variable("Color", "blue")
octo.set_variable("ApiKey", "key-123", sensitive=True)
print("api key key-123")
with open("data.bin", "wb") as f:
    f.write(b"12345")
octo.create_artifact("data.bin")
octo.update_progress(75, "three quarters")
octo.write_warning("py warning")
print("py error", file=sys.stderr)
octo.fail_step("python says no")
"""
    done = run_runner(
        make_request("run-script", script("python", body), work_dir=work_dir, variables=VARIABLES)
    )
    assert done.exit_code == 1
    assert done.result["message"] == "python says no"
    out = done.logs(stream="stdout")
    assert "greeting=hello" in out
    assert "ref=hello world" in out
    assert "missing=None" in out
    assert "octopus=héllo ✓" in out
    assert "tricky=" + repr(VARIABLES[2]["value"]) in out
    assert "api key ********" in out
    assert [(v["name"], v["sensitive"]) for v in done.of_type("output-variable")] == [
        ("Color", False),
        ("ApiKey", True),
    ]
    assert done.of_type("artifact") == [
        {"type": "artifact", "path": str(work_dir / "data.bin"), "name": "data.bin", "length": 5}
    ]
    assert done.of_type("progress")[0] == {
        "type": "progress",
        "percentage": 75,
        "message": "three quarters",
    }
    assert done.logs("warning", "stdout") == ["py warning"]
    assert done.logs("error", "stderr") == ["py error"]


def test_python_traceback_shows_the_script_line(run_runner: RunRunner, work_dir: Path) -> None:
    body = "x = 1\nraise RuntimeError('broken on purpose')\n"
    done = run_runner(make_request("run-script", script("python", body), work_dir=work_dir))
    assert done.exit_code == 1
    errors = done.logs("error", "stderr")
    assert '  File "<octo-script>", line 2, in <module>' in errors
    assert "    raise RuntimeError('broken on purpose')" in errors
    assert "RuntimeError: broken on purpose" in errors
    assert not any("bootstrap.py" in line for line in errors)


def test_sh_script(run_runner: RunRunner, work_dir: Path) -> None:
    body = """
printf '%s\\n' "g=$(get_octovariable Greeting)"
printf '%s|\\n' "$(get_octopusvariable Tricky)"
set_octovariable FromSh yes
write_warning "sh warning"
pwd
exit 7
"""
    done = run_runner(
        make_request("run-script", script("sh", body), work_dir=work_dir, variables=VARIABLES)
    )
    assert done.exit_code == 7
    assert done.result == result_event(7, "the script failed with exit code 7")
    out = done.logs(stream="stdout")
    assert "g=hello" in out
    assert "back\\slash 'quote' \"dq\" $HOME `x` %s\ttab" in out
    assert "second line|" in out
    assert str(work_dir) in out  # the script runs in the work directory
    assert done.of_type("output-variable")[0]["name"] == "FromSh"
    assert done.logs("warning", "stdout") == ["sh warning"]


@pytest.mark.parametrize(("code", "success"), [(0, True), (3, False), (255, False)])
def test_exit_codes(run_runner: RunRunner, work_dir: Path, code: int, success: bool) -> None:
    done = run_runner(make_request("run-script", script("bash", f"exit {code}"), work_dir=work_dir))
    assert done.exit_code == code
    assert done.result["exit_code"] == code
    assert done.result["success"] is success


def test_killed_by_a_signal_reports_128_plus_signal(run_runner: RunRunner, work_dir: Path) -> None:
    done = run_runner(
        make_request("run-script", script("bash", "kill -KILL $$"), work_dir=work_dir)
    )
    assert done.exit_code == 137
    assert done.result["success"] is False


def test_substitution_happens_before_the_script_runs(run_runner: RunRunner, work_dir: Path) -> None:
    body = "echo '#{Greeting | ToUpper}' '##{Greeting}' #{each s in Servers}#{s}-#{/each}"
    done = run_runner(
        make_request(
            "run-script",
            script("bash", body),
            work_dir=work_dir,
            variables=[*VARIABLES, variable("Servers", "a,b")],
        )
    )
    assert done.exit_code == 0
    assert done.logs(stream="stdout") == ["HELLO #{Greeting} a-b-"]


def test_substitution_can_be_turned_off(run_runner: RunRunner, work_dir: Path) -> None:
    done = run_runner(
        make_request(
            "run-script", script("bash", "echo '#{Nope}'", substitute=False), work_dir=work_dir
        )
    )
    assert done.exit_code == 0
    assert done.logs(stream="stdout") == ["#{Nope}"]


def test_unresolved_references_fail_before_anything_runs(
    run_runner: RunRunner, work_dir: Path
) -> None:
    body = "touch ran.txt\necho #{Missing} #{AlsoMissing}"
    done = run_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    assert done.exit_code == 1
    assert done.result["success"] is False
    assert "Missing, AlsoMissing" in done.result["message"]
    assert not (work_dir / "ran.txt").exists()


def test_service_message_problems_are_warnings(run_runner: RunRunner, work_dir: Path) -> None:
    body = "\n".join(
        [
            "echo \"##octo[setVariable name='!!!']\"",
            'echo "##octo[noSuchThing]"',
            'echo "' + format_service_message("createArtifact", {"path": "missing.txt"}) + '"',
            'echo "' + format_service_message("progress", {"percentage": "lots"}) + '"',
            'echo "' + format_service_message("setVariable", {"name": "X"}) + '"',
            "echo still running",
        ]
    )
    done = run_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    assert done.exit_code == 0
    warnings = done.logs("warning", "runner")
    assert len(warnings) == 5
    assert "not base64" in warnings[0]
    assert "unknown service message 'noSuchThing'" in warnings[1]
    assert "artifact 'missing.txt' not found" in warnings[2]
    assert "non-numeric percentage" in warnings[3]
    assert "malformed setVariable" in warnings[4]
    assert done.logs(stream="stdout") == ["still running"]
    assert done.of_type("output-variable") == done.of_type("artifact") == []


def test_fail_message_fails_even_with_exit_code_0(run_runner: RunRunner, work_dir: Path) -> None:
    line = format_service_message("fail", {"message": "marked failed"})
    done = run_runner(
        make_request("run-script", script("bash", f'echo "{line}"'), work_dir=work_dir)
    )
    assert (done.exit_code, done.result["success"], done.result["message"]) == (
        1,
        False,
        "marked failed",
    )


def test_output_is_streamed_while_the_script_runs(
    start_runner: StartRunner, work_dir: Path, tmp_path: Path
) -> None:
    # The script prints, then waits for a file the test only creates after reading that line
    # from the runner: the line must arrive before the script ends.
    go = tmp_path / "go"
    body = f"echo first line\nwhile [ ! -e '{go}' ]; do sleep 0.05; done\necho second line"
    proc = start_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert b"first line" in first
    go.write_text("go")
    done = finish(proc)
    assert done.exit_code == 0
    assert done.logs(stream="stdout") == ["second line"]


def test_long_lines_are_split_not_lost(run_runner: RunRunner, work_dir: Path) -> None:
    body = "head -c 150000 /dev/zero | tr '\\0' 'x'; echo; echo after"
    done = run_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    out = done.logs(stream="stdout")
    assert "".join(out[:-1]) == "x" * 150000
    assert out[-1] == "after"
    assert len(out) == 4


def test_helper_files_are_removed_after_the_run(run_runner: RunRunner, work_dir: Path) -> None:
    done = run_runner(
        make_request("run-script", script("python", "print('hi')"), work_dir=work_dir)
    )
    assert done.exit_code == 0
    assert list(work_dir.iterdir()) == []


@pytest.mark.skipif(shutil.which("pwsh") is not None, reason="pwsh is installed here")
def test_pwsh_without_pwsh_is_a_clear_error(run_runner: RunRunner, work_dir: Path) -> None:
    done = run_runner(
        make_request("run-script", script("pwsh", "Write-Host hi"), work_dir=work_dir)
    )
    assert done.exit_code == 1
    assert "'pwsh' is not on PATH" in done.result["message"]
    assert "install PowerShell" in done.result["message"]


def test_interpreter_can_be_chosen(run_runner: RunRunner, work_dir: Path) -> None:
    body = "import sys; print(sys.executable)"
    done = run_runner(
        make_request(
            "run-script", script("python", body, interpreter=sys.executable), work_dir=work_dir
        )
    )
    assert done.logs(stream="stdout") == [sys.executable]
    missing = run_runner(
        make_request(
            "run-script", script("python", body, interpreter="no-such-python"), work_dir=work_dir
        )
    )
    assert missing.exit_code == 1
    assert "'no-such-python' is not on PATH" in missing.result["message"]


OLD_PYTHON = old_python()


@pytest.mark.skipif(OLD_PYTHON is None, reason="no Python 3.9/3.10 on this machine")
@pytest.mark.parametrize("syntax", ["bash", "python"])
def test_runs_on_the_oldest_supported_python(
    run_runner: RunRunner, work_dir: Path, syntax: str
) -> None:
    body = {
        "bash": "set_octovariable A $(get_octovariable Greeting)",
        "python": "import octo; octo.set_variable('A', octo.get_variable('Greeting'))",
    }
    done = run_runner(
        make_request(
            "run-script", script(syntax, body[syntax]), work_dir=work_dir, variables=VARIABLES
        ),
        python=OLD_PYTHON,
    )
    assert done.exit_code == 0, done.events
    assert done.of_type("output-variable")[0]["value"] == "hello"


SHELL_OUTPUTS = [
    pytest.param(
        'value=$(get_octovariable Greeting)\r\nset_octovariable Greeting "$value"\r\n',
        [("Greeting", "hello")],
        id="windows-line-endings",
    ),
    pytest.param(
        'set_octovariable Dir "$(cd "$(dirname "$0")" && pwd)"\nset_octovariable Count "$#"\n',
        [("Dir", "{work_dir}"), ("Count", "0")],
        id="dollar-0-is-in-the-work-dir-and-no-arguments-are-left",
    ),
]


@pytest.mark.parametrize("syntax", ["bash", "sh"])
@pytest.mark.parametrize(("body", "expected"), SHELL_OUTPUTS)
def test_shell_scripts_set_output_variables(
    run_runner: RunRunner,
    work_dir: Path,
    syntax: str,
    body: str,
    expected: list[tuple[str, str]],
) -> None:
    """``{work_dir}`` in an expected value stands for the work dir (resolved)."""
    done = run_runner(
        make_request("run-script", script(syntax, body), work_dir=work_dir, variables=VARIABLES)
    )
    assert done.exit_code == 0, done.events
    assert [(v["name"], v["value"]) for v in done.of_type("output-variable")] == [
        (name, value.format(work_dir=work_dir.resolve())) for name, value in expected
    ]


def test_scripts_see_the_agents_applications_folder(run_runner: RunRunner, work_dir: Path) -> None:
    name = "Octopus.Tentacle.Agent.ApplicationDirectoryPath"
    body = f'set_octopusvariable Apps "$(get_octopusvariable {name})"'
    request = make_request(
        "run-script",
        script("bash", body),
        work_dir=work_dir,
        variables=VARIABLES,
        context={"applications_dir": "/srv/agent/applications"},
    )
    done = run_runner(request)
    assert done.exit_code == 0, done.events
    assert done.of_type("output-variable")[0]["value"] == "/srv/agent/applications"


def test_helpers_work_under_strict_shell_options(run_runner: RunRunner, work_dir: Path) -> None:
    body = """set -euo pipefail
value=$(get_octovariable Missing)
set_octovariable Empty "$value"
set_octovariable Greeting "$(get_octovariable Greeting)"
write_verbose "still here"
"""
    done = run_runner(
        make_request("run-script", script("bash", body), work_dir=work_dir, variables=VARIABLES)
    )
    assert done.exit_code == 0, done.events
    assert [(v["name"], v["value"]) for v in done.of_type("output-variable")] == [
        ("Empty", ""),
        ("Greeting", "hello"),
    ]


def test_a_background_process_holding_the_output_does_not_hang_the_step(
    run_runner: RunRunner, work_dir: Path
) -> None:
    body = "sleep 30 &\necho $! > bg.txt\necho started"
    done = run_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    try:
        assert done.exit_code == 0
        assert done.logs(stream="stdout") == ["started"]
        assert any("still holds its output open" in w for w in done.logs("warning", "runner"))
    finally:
        os.kill(int((work_dir / "bg.txt").read_text()), signal.SIGTERM)
