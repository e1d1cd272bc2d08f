"""The runner's fork server (``octo-runner --fork-server``), driven directly over its control
socket: each request it forks must be a runner exactly like one started from scratch, and
the server must report every child's end, shrug off bad messages, and take its children
down when the agent's end of the socket goes away."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunRunner
from .support import make_request, parse_events, script, wait_for_file

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SOCK_SEQPACKET, /proc and prctl are Linux"
)

#: the bound of every wait below: long enough for a loaded machine, short enough to fail
TIMEOUT = 60.0
MESSAGE_BYTES = 4096


@dataclass
class Child:
    """A forked runner as the test sees it: its pid and the read ends of its stdout/stderr."""

    ident: int
    pid: int
    stdout: int
    stderr: int

    def output(self, timeout: float = TIMEOUT) -> tuple[list[dict[str, Any]], str]:
        """Its events and stderr, read until both pipes reach end-of-file."""
        chunks = {self.stdout: b"", self.stderr: b""}
        open_fds = [self.stdout, self.stderr]
        deadline = time.monotonic() + timeout
        while open_fds:
            left = deadline - time.monotonic()
            assert left > 0, f"runner {self.pid} kept its output open: {chunks}"
            ready, _, _ = select.select(open_fds, [], [], min(left, 1.0))
            for fd in ready:
                data = os.read(fd, 65536)
                if data:
                    chunks[fd] += data
                else:
                    open_fds.remove(fd)
        return parse_events(chunks[self.stdout].decode()), chunks[self.stderr].decode()

    def close(self) -> None:
        for fd in (self.stdout, self.stderr):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class ForkServer:
    """The agent's side of the control socket, with the messages not yet asked for."""

    proc: subprocess.Popen[bytes]
    control: socket.socket
    pid: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)
    next_id: int = 1

    def receive(self) -> dict[str, Any]:
        data = self.control.recv(MESSAGE_BYTES)
        assert data, "the fork server closed the control socket"
        message: dict[str, Any] = json.loads(data)
        return message

    def wait_for(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first message (kept or new) that ``wanted`` accepts; the others are kept."""
        for index, message in enumerate(self.pending):
            if wanted(message):
                return self.pending.pop(index)
        while True:
            message = self.receive()  # the socket's timeout bounds this
            if wanted(message):
                return message
            self.pending.append(message)

    def exit_code(self, pid: int) -> int:
        code: int = self.wait_for(lambda m: m.get("exit") == pid)["code"]
        return code

    def send(self, data: bytes, fds: list[int]) -> None:
        socket.send_fds(self.control, [data], fds)

    def fork(self, request: dict[str, Any]) -> Child:
        """Ask for a runner on ``request`` (written to its stdin first) and wait for its pid."""
        ident = self.next_id
        self.next_id += 1
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        try:
            os.write(stdin_w, json.dumps(request).encode())  # far below a pipe's buffer
        finally:
            os.close(stdin_w)
        try:
            self.send(json.dumps({"id": ident}).encode(), [stdin_r, stdout_w, stderr_w])
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)  # the child's copies are its only ones: EOF means it ended
        reply = self.wait_for(lambda m: m.get("id") == ident)
        assert set(reply) == {"id", "pid"}, reply
        child = Child(ident, reply["pid"], stdout_r, stderr_r)
        self.children.append(child)
        return child


@pytest.fixture
def fork_server(runner_pyz: Path, tmp_path: Path) -> Iterator[ForkServer]:
    """A fork server of the built zipapp, started in ``/`` (not where any test works)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with (tmp_path / "server-stderr.txt").open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(runner_pyz), "--fork-server"],
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd="/",
        )
    theirs.close()  # the server's copy must be the only one, or it never sees EOF
    ours.settimeout(TIMEOUT)
    server = ForkServer(proc, ours)
    try:
        ready = server.receive()
        assert ready == {"ready": True, "pid": proc.pid}
        server.pid = proc.pid
        yield server
    finally:
        ours.close()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for child in server.children:
            if _alive(child.pid):
                os.kill(child.pid, signal.SIGKILL)
            child.close()


def _state(pid: int) -> str | None:
    """The process state letter of ``pid`` (``None`` once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs: a zombie has ended (its reaper is not this test)."""
    return _state(pid) not in (None, "Z", "X")


def _wait_gone(pid: int, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return not _alive(pid)


def _kill_group(pid: int) -> None:
    """Clean up a script a test left without its runner (it is its own session leader)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _eof_when_closed(read_end: int) -> bool:
    """Whether a pipe's read end reaches end-of-file (every write end closed) in time."""
    ready, _, _ = select.select([read_end], [], [], TIMEOUT)
    return bool(ready) and os.read(read_end, 1) == b""


def _by_source(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Events without their times, in order per source: a script's stdout and stderr are
    two pipes, so how lines of one interleave with the other's varies from run to run."""
    sources: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        source = "stderr" if event.get("stream") == "stderr" else "other"
        sources.setdefault(source, []).append({k: v for k, v in event.items() if k != "time"})
    return sources


SCRIPT_BODY = """
echo "hello from the script"
echo "to stderr" >&2
set_octovariable Port 8080
write_warning "careful now"
"""


@pytest.mark.parametrize(("tail", "code"), [("", 0), ("exit 3", 3)])
def test_a_forked_runner_serves_a_request_like_a_started_one(
    fork_server: ForkServer, run_runner: RunRunner, tmp_path: Path, tail: str, code: int
) -> None:
    work_dir = tmp_path / "work"
    request = make_request("run-script", script("bash", SCRIPT_BODY + tail), work_dir=work_dir)
    direct = run_runner(request)

    child = fork_server.fork(request)
    events, stderr = child.output()

    assert direct.exit_code == code
    assert fork_server.exit_code(child.pid) == code
    assert events[-1]["type"] == "result" and events[-1]["exit_code"] == code, stderr
    assert "hello from the script" in [e.get("message") for e in events]
    assert _by_source(events) == _by_source(direct.events)


FD_REPORT = """
cat /proc/$PPID/stat
readlink /proc/$PPID/cwd
for f in /proc/$PPID/fd/*; do echo "fd ${f##*/} $(readlink "$f")"; done
"""


def _report(events: list[dict[str, Any]]) -> tuple[list[str], str, dict[int, str]]:
    """The runner's stat fields after its name, its cwd, and its fds, as FD_REPORT says."""
    said = [e["message"] for e in events if e.get("stream") == "stdout"]
    stat, cwd, *fd_lines = said
    fds = {int(n): target for _, n, target in (line.split(" ", 2) for line in fd_lines)}
    return stat.rsplit(")", 1)[1].split(), cwd, fds


def test_a_forked_runner_is_its_own_session_in_its_work_dir_with_only_its_own_fds(
    fork_server: ForkServer, run_runner: RunRunner, tmp_path: Path
) -> None:
    work_dir = tmp_path / "work"
    request = make_request("run-script", script("bash", FD_REPORT), work_dir=work_dir)
    direct = run_runner(request)
    assert direct.exit_code == 0, direct.stderr

    child = fork_server.fork(request)
    events, stderr = child.output()
    assert fork_server.exit_code(child.pid) == 0, stderr

    stat, cwd, fds = _report(events)
    ppid, pgrp, session = (int(x) for x in stat[1:4])
    assert ppid == fork_server.pid
    assert session == pgrp == child.pid  # setsid(): the agent's signals to its group miss it
    assert cwd == str(work_dir)  # the server runs in /
    # 0, 1 and 2 are the pipes this test sent, and nothing else is a socket: no copy of
    # the control socket (nor of the server's wake-up pipe) reached the runner
    assert fds[1] == f"pipe:[{os.fstat(child.stdout).st_ino}]"
    assert fds[2] == f"pipe:[{os.fstat(child.stderr).st_ino}]"
    assert fds[0].startswith("pipe:[")
    assert not [target for target in fds.values() if target.startswith("socket:")]
    # and it holds exactly the descriptors a runner started from scratch holds
    _, _, direct_fds = _report(direct.events)
    assert sorted(fds) == sorted(direct_fds)


def test_a_malformed_message_gets_no_answer_and_the_server_keeps_serving(
    fork_server: ForkServer, tmp_path: Path
) -> None:
    probe_r, probe_w = os.pipe()
    try:
        for data in (b"not json", b"\xff{", b"[1, 2]", b'{"no_id": 1}', b'"id"'):
            fork_server.send(data, [probe_w, probe_w, probe_w])
    finally:
        os.close(probe_w)
    try:
        assert _eof_when_closed(probe_r)  # the server closed what those messages carried
    finally:
        os.close(probe_r)
    request = make_request("run-script", script("bash", "echo fine"), work_dir=tmp_path)
    child = fork_server.fork(request)
    events, _ = child.output()
    assert events[-1]["success"] is True
    assert fork_server.exit_code(child.pid) == 0
    # nothing answered the malformed messages: every message so far was asked for
    assert fork_server.pending == []


@pytest.mark.parametrize("count", [0, 1, 2])
def test_a_message_with_too_few_descriptors_gets_an_error_answer(
    fork_server: ForkServer, tmp_path: Path, count: int
) -> None:
    probe_r, probe_w = os.pipe()
    try:
        fork_server.send(b'{"id": 41}', [probe_w] * count)
    finally:
        os.close(probe_w)
    try:
        reply = fork_server.wait_for(lambda m: m.get("id") == 41)
        assert reply == {"id": 41, "error": "expected 3 descriptors"}
        assert _eof_when_closed(probe_r)  # nor did it keep them
    finally:
        os.close(probe_r)
    request = make_request("run-script", script("bash", "exit 4"), work_dir=tmp_path)
    child = fork_server.fork(request)
    assert child.output()[0][-1]["exit_code"] == 4
    assert fork_server.exit_code(child.pid) == 4
    assert fork_server.pending == []  # no child was forked for the bad message


def test_a_message_with_too_many_descriptors_gets_an_error_answer(
    fork_server: ForkServer,
) -> None:
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    os.close(stdin_w)  # a runner forked anyway reads no request and ends at once
    try:
        fork_server.send(b'{"id": 42}', [stdin_r, out_w, out_w, out_w])
        os.close(out_w)
        reply = fork_server.wait_for(lambda m: m.get("id") == 42)
        if "pid" in reply:  # the bug: clean up the runner it forked
            fork_server.exit_code(reply["pid"])
        assert reply == {"id": 42, "error": "expected 3 descriptors"}
    finally:
        os.close(stdin_r)
        os.close(out_r)


@contextlib.contextmanager
def script_running(
    fork_server: ForkServer, work_dir: Path, body: str
) -> Iterator[tuple[Child, int]]:
    """A runner forked with a bash script that writes its pid, then runs ``body``: the runner
    and the script's pid once it runs; the script's group is killed at the end (its runner
    may have died before it could stop it)."""
    body = f"echo $$ > pid.txt\n{body}"
    child = fork_server.fork(make_request("run-script", script("bash", body), work_dir=work_dir))
    script_pid = int(wait_for_file(work_dir / "pid.txt"))
    try:
        yield child, script_pid
    finally:
        _kill_group(script_pid)


def test_closing_the_control_socket_ends_the_server_and_cancels_its_runners(
    fork_server: ForkServer, tmp_path: Path
) -> None:
    body = "sleep 300\necho 'not reached'\n"
    with script_running(fork_server, tmp_path, body) as (child, script_pid):
        fork_server.control.close()  # the agent is gone
        assert fork_server.proc.wait(TIMEOUT) == 0
        events, stderr = child.output()
        # the runner was cancelled (SIGTERM on its parent's death), as a runner whose
        # agent dies is, and stopped its script
        assert events[-1]["type"] == "result", stderr
        assert events[-1]["exit_code"] == 143
        assert events[-1].get("canceled") is True
        assert "not reached" not in [e.get("message") for e in events]
        assert _wait_gone(child.pid)
        assert _wait_gone(script_pid)


def test_a_runner_killed_by_sigkill_is_reported_with_minus_nine(
    fork_server: ForkServer, tmp_path: Path
) -> None:
    with script_running(fork_server, tmp_path, "exec sleep 300\n") as (child, _):
        os.kill(child.pid, signal.SIGKILL)
        assert fork_server.exit_code(child.pid) == -signal.SIGKILL
        events, _ = child.output()
        assert not [e for e in events if e["type"] == "result"]


RENDEZVOUS = """
touch "$DIR/started.$N"
for _ in $(seq 600); do
  [ "$(ls "$DIR" | grep -c '^started\\.')" -ge {count} ] && exit $((10 + N))
  sleep 0.05
done
exit 99
"""


def test_concurrent_runners_each_get_their_own_exit_message(
    fork_server: ForkServer, tmp_path: Path
) -> None:
    """Five scripts that wait for each other (so they run at once) end with five codes."""
    count = 5
    body = RENDEZVOUS.replace("{count}", str(count))
    children = []
    for n in range(count):
        work_dir = tmp_path / f"work{n}"
        prelude = f"DIR={tmp_path}\nN={n}\n"
        request = make_request("run-script", script("bash", prelude + body), work_dir=work_dir)
        children.append(fork_server.fork(request))

    assert len({child.pid for child in children}) == count
    for n, child in enumerate(children):
        events, stderr = child.output()
        assert events[-1]["exit_code"] == 10 + n, stderr
    codes = {child.pid: fork_server.exit_code(child.pid) for child in children}
    assert codes == {child.pid: 10 + n for n, child in enumerate(children)}
    assert fork_server.pending == []  # one exit message each, no more
