"""A chatty script through the built runner: every line arrives, in order, memory stays bounded.

The reader here (standing in for the agent) stops reading for a while first: the runner must
then hold the script back (its pipe fills) rather than buffer its output or give up on it.
Events are checked as they stream, never all kept, so 200 MB of output costs the test little.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.peak_rss import PeakRss

from .conftest import StartRunner
from .support import finish, make_request, script

MB = 1024 * 1024
#: a script line is 100 bytes with its newline
LINE = "line %07d " + "x" * 88

CHATTY = """python3 -c '
import sys
w = sys.stdout.write
for i in range({count}):
    w("line %07d " % i + "x" * 88 + "\\n")
'
echo "final line"
set_octovariable Done "yes"
"""


class Stream:
    """What the checks need of a runner's events, gathered while reading them."""

    def __init__(self) -> None:
        self.numbered = 0
        self.out_of_order: list[str] = []
        self.tail: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.peak_rss = 0

    def add(self, event: dict[str, Any]) -> None:
        message = event.get("message", "")
        numbered = event.get("stream") == "stdout" and message.startswith("line ")
        if event["type"] == "log" and numbered:
            if message != LINE % self.numbered and len(self.out_of_order) < 5:
                self.out_of_order.append(message[:20])
            self.numbered += 1
            return
        if event["type"] == "log" and event["level"] == "warning":
            self.warnings.append(message)
        self.tail.append(event)


def run_chatty(start_runner: StartRunner, work_dir: Path, count: int, pause: float) -> Stream:
    """Run the chatty script, read nothing for ``pause`` s, then read every event."""
    request = make_request(
        "run-script", script("bash", CHATTY.format(count=count)), work_dir=work_dir
    )
    proc = start_runner(request)
    rss = PeakRss(proc.pid)
    seen = Stream()
    try:
        time.sleep(pause)  # the agent is busy: the script must wait, nothing may be lost
        assert proc.stdout is not None
        for raw in proc.stdout:
            seen.add(json.loads(raw))
        proc.wait(120)
    finally:
        peak = rss.stop()
    assert proc.returncode == 0, seen.tail
    seen.peak_rss = peak
    return seen


def check_complete(seen: Stream, count: int) -> None:
    assert seen.out_of_order == []
    assert seen.numbered == count
    assert seen.warnings == []
    kinds = [(e["type"], e.get("message") or e.get("name")) for e in seen.tail]
    assert kinds == [
        ("log", "final line"),
        ("output-variable", "Done"),
        ("log", "set output variable 'Done'"),
        ("result", "the script succeeded"),
    ]


@pytest.mark.parametrize(
    ("megabytes", "pause"),
    [
        pytest.param(20, 4.0, id="20-mb-while-the-reader-lags"),
        pytest.param(200, 2.0, id="200-mb", marks=pytest.mark.slow),
    ],
)
def test_output_arrives_whole_in_bounded_memory(
    start_runner: StartRunner, work_dir: Path, megabytes: int, pause: float
) -> None:
    count = megabytes * MB // 100
    seen = run_chatty(start_runner, work_dir, count, pause=pause)
    check_complete(seen, count)
    # the runner's queue is bounded: the output does not sit in its memory
    assert seen.peak_rss < 80 * MB


HELD_OPEN = """sleep 60 &
echo $! > bg.txt
for i in $(seq 1 3000); do echo "own line $i"; done
set_octovariable Done "yes"
echo "last whole line"
printf 'unfinished last line'
"""


def test_a_background_child_holding_stdout_loses_none_of_the_scripts_output(
    start_runner: StartRunner, work_dir: Path
) -> None:
    proc = start_runner(make_request("run-script", script("bash", HELD_OPEN), work_dir=work_dir))
    try:
        done = finish(proc)
    finally:
        os.kill(int((work_dir / "bg.txt").read_text()), signal.SIGTERM)
    assert done.exit_code == 0, done.events
    stdout = done.logs(stream="stdout")
    assert stdout == [f"own line {i}" for i in range(1, 3001)] + [
        "last whole line",
        "unfinished last line",
    ]
    assert [v["name"] for v in done.of_type("output-variable")] == ["Done"]
    [warning] = done.logs("warning", "runner")
    assert "still holds its output open" in warning
    assert done.result["success"] is True


STILL_WRITING = """(while :; do echo "background tick"; sleep 0.2; done) &
echo $! > bg.txt
echo "own line"
set_octovariable Done "yes"
"""


@pytest.mark.slow
def test_a_background_child_that_never_stops_writing_does_not_hold_the_step(
    start_runner: StartRunner, work_dir: Path
) -> None:
    proc = start_runner(
        make_request("run-script", script("bash", STILL_WRITING), work_dir=work_dir)
    )
    try:
        done = finish(proc, timeout=120)
    finally:
        os.killpg(os.getpgid(int((work_dir / "bg.txt").read_text())), signal.SIGTERM)
    assert done.exit_code == 0, done.events
    # the background loop may print before the script's own line: only its presence is promised
    assert "own line" in done.logs(stream="stdout")
    assert [v["name"] for v in done.of_type("output-variable")] == ["Done"]
    [warning] = done.logs("warning", "runner")
    assert "keeps writing to its output" in warning


def test_line_splitting_keeps_long_lines_and_carriage_returns_apart() -> None:
    from octo_runner.scripts.pipes import MAX_LINE_BYTES, split_lines

    long = b"a" * (MAX_LINE_BYTES + 10)
    lines, rest = split_lines(b"one\r\n" + long + b"\ntwo\nthr")
    assert lines == [b"one", b"a" * MAX_LINE_BYTES, b"a" * 10, b"two"]
    assert rest == b"thr"
