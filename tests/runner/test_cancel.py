"""Cancellation: SIGTERM to the runner stops the script's whole process group."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from .conftest import StartRunner
from .support import finish, make_request, result_event, script, wait_for_file

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


CANCELS = [
    pytest.param(
        """
sleep 60 &
echo $! > child.txt
echo $$ > pid.txt
wait
echo "not reached"
""",
        {},
        id="sigterm-kills-the-script-and-its-children",
    ),
    pytest.param(
        """
trap '' TERM
sh -c 'trap "" TERM; while true; do sleep 0.1; done' &
echo $! > child.txt
echo $$ > pid.txt
wait
""",
        {"cancel_grace_seconds": 0.5},
        id="processes-ignoring-sigterm-are-killed-after-the-grace",
    ),
]


@pytest.mark.parametrize(("body", "arguments"), CANCELS)
def test_sigterm_cancels_the_script_and_its_whole_group(
    start_runner: StartRunner, work_dir: Path, body: str, arguments: dict[str, object]
) -> None:
    """The script writes its own and its child's pid once the child is running."""
    proc = start_runner(
        make_request("run-script", script("bash", body, **arguments), work_dir=work_dir)
    )
    child = int(wait_for_file(work_dir / "child.txt"))
    pgid = os.getpgid(int(wait_for_file(work_dir / "pid.txt")))
    assert os.getpgid(child) == pgid != os.getpgid(0)
    assert _group_exists(pgid)
    proc.send_signal(signal.SIGTERM)
    done = finish(proc)

    assert done.exit_code == 143
    assert done.result == result_event(143, "canceled by SIGTERM", canceled=True)
    assert "canceled by SIGTERM: stopping the script" in done.logs("warning", "runner")
    # By the time the runner reports the cancel, nothing of the script's group is left:
    # not even a zombie (the runner adopts and reaps the orphans).
    assert not _group_exists(pgid)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_when_the_agent_stops_reading_the_script_is_stopped(
    start_runner: StartRunner, work_dir: Path
) -> None:
    body = """
sleep 60 &
echo $! > child.txt
echo $$ > pid.txt
while true; do echo tick; sleep 0.05; done
"""
    proc = start_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    child = int(wait_for_file(work_dir / "child.txt"))
    pgid = os.getpgid(int(wait_for_file(work_dir / "pid.txt")))
    assert proc.stdout is not None
    proc.stdout.close()  # the agent went away: the runner's next event cannot be written
    proc.stdout = None
    done = finish(proc)
    assert done.exit_code == 1
    assert "the agent closed the runner's output" in done.stderr
    assert not _group_exists(pgid)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_cancel_ends_even_when_a_process_outside_the_group_holds_the_output(
    start_runner: StartRunner, work_dir: Path
) -> None:
    """A process that left the group (``setsid``) is out of the cancel's reach and keeps the
    pipes open: the runner still reports the cancel once the pipes went quiet."""
    body = """
setsid sleep 60 &
echo $! > escaped.txt
echo $$ > pid.txt
sleep 60
"""
    proc = start_runner(make_request("run-script", script("bash", body), work_dir=work_dir))
    escaped = int(wait_for_file(work_dir / "escaped.txt"))
    wait_for_file(work_dir / "pid.txt")
    try:
        proc.send_signal(signal.SIGTERM)
        done = finish(proc)
        assert done.exit_code == 143
        assert done.result["canceled"] is True
        assert any("still holds its output open" in w for w in done.logs("warning", "runner"))
    finally:
        os.kill(escaped, signal.SIGKILL)
