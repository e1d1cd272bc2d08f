"""A runner started before its request (the agent keeps one waiting): it imports its
commands while idle, and works in the request's ``work_dir`` wherever it was started."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import IO

from .support import make_request, parse_events, plain_python, script

#: a command the requests below do not use; ``-v`` reports each import as it happens
IDLE_IMPORT = "import 'octo_runner.commands.health_check'"


def _lines_until(stream: IO[bytes], wanted: str, timeout: float) -> list[str]:
    """Lines of ``stream`` up to the one starting with ``wanted`` (AssertionError after
    ``timeout`` seconds without it, so a runner that never prints it fails, not hangs)."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    buffer = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.5)
        if not ready:
            continue
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            seen.append(raw.decode("utf-8", "replace"))
            if seen[-1].startswith(wanted):
                return seen
    raise AssertionError(f"no line starting with {wanted!r}; the last ones: {seen[-5:]}")


def _request(work_dir: Path) -> bytes:
    body = 'echo "runner cwd $(readlink /proc/$PPID/cwd)"'
    return json.dumps(make_request("run-script", script("bash", body), work_dir=work_dir)).encode()


def test_an_idle_runner_imports_its_commands_then_serves_a_request(
    runner_pyz: Path, tmp_path: Path
) -> None:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    proc = subprocess.Popen(
        [plain_python(), "-v", "-I", "-S", str(runner_pyz)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
    )
    try:
        assert proc.stdin is not None and proc.stderr is not None
        # nothing is written to stdin until the runner has imported a command it was not
        # asked for (yet): that import happened while it was idle
        _lines_until(proc.stderr, IDLE_IMPORT, 60)
        stdout, _ = proc.communicate(_request(work_dir), timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    events = parse_events(stdout.decode())
    assert proc.returncode == 0
    assert events[-1]["success"] is True
    said = [e["message"] for e in events if e.get("stream") == "stdout"]
    assert said == [f"runner cwd {work_dir}"]  # the runner moved there itself


def test_a_runner_given_its_request_at_once_imports_only_that_command(
    runner_pyz: Path, tmp_path: Path
) -> None:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    request = tmp_path / "request.json"
    request.write_bytes(_request(work_dir))  # a regular file: readable at once
    with request.open("rb") as stdin:
        done = subprocess.run(
            [plain_python(), "-v", "-I", "-S", str(runner_pyz)],
            stdin=stdin,
            capture_output=True,
            cwd=tmp_path,
            timeout=60,
        )

    assert done.returncode == 0, done.stderr.decode()
    imported = [line for line in done.stderr.decode().splitlines() if line.startswith("import '")]
    assert any(line.startswith("import 'octo_runner.commands.run_script'") for line in imported)
    assert not [line for line in imported if line.startswith(IDLE_IMPORT)]
    said = [e["message"] for e in parse_events(done.stdout.decode()) if e.get("stream") == "stdout"]
    assert said == [f"runner cwd {work_dir}"]


def test_a_relative_work_dir_is_not_entered(runner_pyz: Path, tmp_path: Path) -> None:
    """Only an absolute ``work_dir`` is entered: a relative one keeps meaning "relative to
    where the runner was started", as before."""
    request = make_request("run-script", script("bash", "pwd"), work_dir=Path("rel"))
    done = subprocess.run(
        [plain_python(), "-I", "-S", str(runner_pyz)],
        input=json.dumps(request).encode(),
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    said = [e["message"] for e in parse_events(done.stdout.decode()) if e.get("stream") == "stdout"]
    assert said == [str(tmp_path / "rel")]
