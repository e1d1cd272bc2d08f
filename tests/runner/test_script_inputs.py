"""A script's inputs (its variable table and its text) reach it unchanged, whether they travel
in a ``memfd`` (Linux: filled before the start, read in blocks) or on a pipe fed by a thread
(elsewhere, or when the kernel refuses a ``memfd``)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from octo_runner.cancellation import CancelToken
from octo_runner.masking import Masker
from octo_runner.protocol import EventWriter
from octo_runner.scripts import host, launch

from .conftest import RunRunner
from .support import make_request, parse_events, script, variable

#: values a table line must carry: tabs, line breaks, backslashes (also ones that look like
#: the table's own \0ooo escapes), unicode, empty, spaces at both ends, control characters
VALUES = [
    "",
    "plain",
    "tab\there",
    "\ttab first and last\t",
    "line 1\nline 2",
    "ends with a line break\n",
    "\n",
    "cr\r\nlf",
    "back\\slash \\n \\t \\0101 \\\\",
    "héllo ✓ 日本",
    "  spaces  ",
    "bell\a esc\x1b del\x7f",
    "%s %b %d $HOME `x` $(y) 'q' \"dq\"",
    "x" * 5000,
]

#: bash 4+: every value back from the associative array, and from get_octovariable (whose
#: command substitution drops trailing line breaks); sh: from get_octovariable
BASH_BODY = """set -eu
i=0
while [ "$i" -lt {count} ]; do
    set_octovariable "A$i" "${{octo_parameters[V$i]}}"
    set_octovariable "G$i" "$(get_octovariable "V$i")"
    i=$((i + 1))
done
"""
SH_BODY = """set -eu
i=0
while [ "$i" -lt {count} ]; do
    set_octovariable "G$i" "$(get_octovariable "V$i")"
    i=$((i + 1))
done
"""
PYTHON_BODY = """
for i in range({count}):
    set_octopusvariable(f"A{{i}}", get_octopusvariable(f"V{{i}}"))
"""


def _variables() -> list[dict[str, object]]:
    return [variable(f"V{i}", value) for i, value in enumerate(VALUES)]


def _expected(syntax: str) -> dict[str, str]:
    expected = {}
    for i, value in enumerate(VALUES):
        if syntax in ("bash", "python"):
            expected[f"A{i}"] = value
        if syntax in ("bash", "sh"):
            expected[f"G{i}"] = value.rstrip("\n")
    return expected


@pytest.mark.parametrize("syntax", ["bash", "sh", "python"])
def test_every_value_reaches_the_script_unchanged(
    run_runner: RunRunner, work_dir: Path, syntax: str
) -> None:
    body = {"bash": BASH_BODY, "sh": SH_BODY, "python": PYTHON_BODY}[syntax]
    request = make_request(
        "run-script",
        script(syntax, body.format(count=len(VALUES)), substitute=False),
        work_dir=work_dir,
        variables=_variables(),
    )
    done = run_runner(request)
    assert done.exit_code == 0, done.events
    got = {v["name"]: v["value"] for v in done.of_type("output-variable")}
    assert got == _expected(syntax)


@pytest.mark.parametrize("with_memfd", [True, False])
def test_the_inputs_arrive_with_and_without_a_memfd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, with_memfd: bool
) -> None:
    """In process, so the pipe path (no ``os.memfd_create``) runs here too."""
    if not with_memfd:
        monkeypatch.delattr(os, "memfd_create", raising=False)
    elif not hasattr(os, "memfd_create"):
        pytest.skip("no memfd on this platform")
    line = "long-script-line " * 2000  # five of them: a script larger than a pipe holds
    body = BASH_BODY.format(count=len(VALUES)) + f"echo {line}\n" * 5
    job = host.ScriptJob(
        syntax="bash",
        body=body,
        variables={f"V{i}": value for i, value in enumerate(VALUES)},
        work_dir=str(tmp_path),
    )
    out = io.BytesIO()
    outcome = host.run(job, EventWriter(out, Masker()), CancelToken())
    events = parse_events(out.getvalue().decode("utf-8"))
    assert outcome.exit_code == 0, events
    got = {e["name"]: e["value"] for e in events if e["type"] == "output-variable"}
    assert got == _expected("bash")
    logged = [e["message"] for e in events if e["type"] == "log" and e.get("stream") == "stdout"]
    assert logged == [line.strip()] * 5


def test_script_input_holds_the_data_from_its_start() -> None:
    data = "the table\t\\0011\n✓\n".encode() * 1_000
    read_end, write_end = launch.script_input(data)
    try:
        if write_end is not None:  # a pipe: what the runner's feeding thread does
            os.write(write_end, data)
            os.close(write_end)
        with os.fdopen(os.dup(read_end), "rb") as stream:
            assert stream.read() == data
    finally:
        os.close(read_end)
    if hasattr(os, "memfd_create"):
        assert write_end is None  # nothing left to feed: no thread per input


#: each lists the descriptors a child of the script inherited, with what they point at
CHILD_FDS = {
    "bash": "ls -l /proc/self/fd/\n",
    "sh": "ls -l /proc/self/fd/\n",
    "python": "import subprocess\nsubprocess.run(['ls', '-l', '/proc/self/fd/'], check=True)\n",
}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("syntax", ["bash", "sh", "python"])
def test_the_script_s_children_cannot_read_the_variables_again(
    run_runner: RunRunner, work_dir: Path, syntax: str
) -> None:
    """A memory file stays readable after the bootstrap read it (a pipe is empty once read):
    the bootstrap closes it, so no child of the script inherits the variable table."""
    request = make_request(
        "run-script",
        script(syntax, CHILD_FDS[syntax], substitute=False),
        work_dir=work_dir,
        variables=[variable("Secret", "not for the children")],
    )
    done = run_runner(request)
    assert done.exit_code == 0, done.events
    listing = "\n".join(done.logs(stream="stdout"))
    assert "/proc/" in listing or "->" in listing, listing  # the listing is there
    assert "memfd:" not in listing, listing
