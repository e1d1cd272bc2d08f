"""Helpers shared by the runner tests: building requests and reading the runner's events."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "build" / "build_runner.py"


def result_event(exit_code: int, message: str, **extra: Any) -> dict[str, Any]:
    """The ``result`` event a run ends with (docs/runner-protocol.md): it succeeded when its
    exit code is 0; ``extra`` are the fields a command adds."""
    success = exit_code == 0
    return {
        "type": "result",
        "exit_code": exit_code,
        "success": success,
        "message": message,
        **extra,
    }


def build_runner(out: Path) -> dict[str, Any]:
    """Build the runner zipapp into ``out`` as a release would (build/build_runner.py); what
    the script reports: ``path``, ``version``, ``sha256``."""
    built = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(out), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    info: dict[str, Any] = json.loads(built.stdout)
    return info


def plain_python() -> str:
    """A system interpreter without the project's virtualenv (falls back to the base one)."""
    for candidate in ("/usr/bin/python3", getattr(sys, "_base_executable", ""), sys.executable):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError("no python3 found")


def old_python() -> str | None:
    """A Python 3.9 or 3.10, if this machine has one (the oldest targets the runner supports)."""
    wanted = os.environ.get("OCTO_TEST_OLD_PYTHON")
    if wanted:
        return wanted
    for pattern in (
        "/root/.pyenv/versions/3.9*/bin/python3.9",
        "/usr/bin/python3.9",
        "/root/.pyenv/versions/3.10*/bin/python3.10",
        "/usr/bin/python3.10",
    ):
        found = sorted(glob.glob(pattern))
        if found:
            return found[-1]
    return None


@dataclass
class RunnerResult:
    exit_code: int
    events: list[dict[str, Any]]
    stderr: str
    raw_stdout: str = ""

    @property
    def result(self) -> dict[str, Any]:
        assert self.events, f"no events; stderr: {self.stderr}"
        last = self.events[-1]
        assert last["type"] == "result", f"last event is not the result: {last}"
        return last

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def logs(self, level: str | None = None, stream: str | None = None) -> list[str]:
        return [
            e["message"]
            for e in self.of_type("log")
            if (level is None or e["level"] == level) and (stream is None or e["stream"] == stream)
        ]


def parse_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def make_request(
    command: str,
    arguments: dict[str, Any],
    *,
    work_dir: Path | None = None,
    variables: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    document: dict[str, Any] = {"protocol": 1, "command": command, "arguments": arguments}
    if work_dir is not None:
        document["work_dir"] = str(work_dir)
    document["variables"] = variables or []
    document["context"] = {"task_id": "tsk_test", "target": "localhost"}
    document.update(extra)
    return document


def variable(name: str, value: str, sensitive: bool = False) -> dict[str, Any]:
    return {"name": name, "value": value, "sensitive": sensitive}


def script(syntax: str, body: str, **arguments: Any) -> dict[str, Any]:
    return {"syntax": syntax, "body": body, **arguments}


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    """Wait until ``path`` holds a complete line, and return its content (stripped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text.endswith("\n"):
                return text.strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> RunnerResult:
    """Wait for a runner started with ``start_runner`` and collect its events."""
    stdout, stderr = proc.communicate(timeout=timeout)
    text = (stdout or b"").decode("utf-8")
    return RunnerResult(proc.returncode, parse_events(text), (stderr or b"").decode(), text)
