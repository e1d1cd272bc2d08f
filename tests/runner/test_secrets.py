"""Sensitive values never reach argv, the environment, files or the log.

While the script runs, the test reads ``/proc/<pid>/cmdline`` and ``environ`` of the script's
process, of a child it started and of the runner itself, and every file in the work
directory; after the run it checks the work directory and everything the runner printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import RunRunner, StartRunner
from .support import finish, make_request, script, variable, wait_for_file

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")

SECRET = "pa55-Wörd-8a1f9c"
DERIVED = "conn=#{DbPassword}"  # a non-sensitive variable whose value holds the secret
MARKED = "runtime-secret-42ff"


def _proc_text(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("syntax", ["bash", "sh", "python"])
def test_secrets_stay_out_of_argv_environment_and_files(
    start_runner: StartRunner, work_dir: Path, tmp_path: Path, syntax: str
) -> None:
    go = tmp_path / "go"
    bodies = {
        "bash": f"""
echo "in body: #{{DbPassword}}"
echo "via helper: $(get_octovariable DbPassword)"
echo "via array: ${{octopus_parameters[DbPassword]}}"
sleep 30 &
echo $! > child.txt
echo $$ > pid.txt
while [ ! -e '{go}' ]; do sleep 0.05; done
""",
        "sh": f"""
echo "in body: #{{DbPassword}}"
echo "via helper: $(get_octovariable DbPassword)"
sleep 30 &
echo $! > child.txt
echo $$ > pid.txt
while [ ! -e '{go}' ]; do sleep 0.05; done
""",
        "python": f"""
import os, subprocess, time, octo
print("in body: #{{DbPassword}}")
print("via module: " + octo.get_variable("DbPassword"))
child = subprocess.Popen(["sleep", "30"])
open("child.txt", "w").write(f"{{child.pid}}\\n")
open("pid.txt", "w").write(f"{{os.getpid()}}\\n")
while not os.path.exists({str(go)!r}):
    time.sleep(0.05)
""",
    }
    document = make_request(
        "run-script",
        script(syntax, bodies[syntax]),
        work_dir=work_dir,
        variables=[variable("DbPassword", SECRET, True), variable("Conn", DERIVED)],
    )
    proc = start_runner(document)
    needle = SECRET.encode()
    pid = int(wait_for_file(work_dir / "pid.txt"))
    child = int(wait_for_file(work_dir / "child.txt"))
    try:
        for process in (pid, child, proc.pid):
            for name in ("cmdline", "environ"):
                assert needle not in _proc_text(process, name), f"secret in {name} of {process}"
        assert _files_containing(work_dir, needle) == []  # the helpers' files included
    finally:
        go.write_text("go")
        os.kill(child, 15)
    done = finish(proc)
    assert done.exit_code == 0, done.events
    assert SECRET not in done.raw_stdout and SECRET not in done.stderr
    assert any(line.startswith("in body: ********") for line in done.logs(stream="stdout"))
    assert any(
        line.startswith("via ") and line.endswith("********") for line in done.logs(stream="stdout")
    )
    assert _files_containing(work_dir, needle) == []


def test_values_marked_sensitive_by_the_script_are_masked_afterwards(
    run_runner: RunRunner, work_dir: Path
) -> None:
    body = f"""
echo "before: {MARKED}"
set_octovariable Token {MARKED} -sensitive
echo "after: {MARKED}"
echo "##octo[mask value='$(printf %s other-value-77 | base64)']"
echo "masked too: other-value-77"
echo "{MARKED}" >&2
"""
    done = run_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    assert done.exit_code == 0
    out = done.logs(stream="stdout")
    # Before the script marks it, the runner cannot know the value is a secret.
    assert out == [f"before: {MARKED}", "after: ********", "masked too: ********"]
    assert done.logs(stream="stderr") == ["********"]
    [output] = done.of_type("output-variable")
    assert output == {
        "type": "output-variable",
        "name": "Token",
        "value": MARKED,
        "sensitive": True,
    }


def test_a_secret_in_the_failure_message_is_masked(run_runner: RunRunner, work_dir: Path) -> None:
    done = run_runner(
        make_request(
            "run-script",
            script("bash", 'fail_step "bad #{Pw}"'),
            work_dir=work_dir,
            variables=[variable("Pw", SECRET, True)],
        )
    )
    assert done.result["message"] == "bad ********"
    assert SECRET not in done.raw_stdout
