"""Fixtures for the runner tests: the zipapp built once per session, and a way to run it.

Integration tests run the BUILT archive under a plain interpreter in isolated mode
(``python3 -I``), outside the project's virtualenv, so the archive must stand on its own.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import RunnerResult, build_runner, parse_events, plain_python

RunRunner = Callable[..., RunnerResult]


@pytest.fixture(scope="session")
def runner_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    return Path(build_runner(out)["path"])


@pytest.fixture
def run_runner(runner_pyz: Path) -> RunRunner:
    """Run the zipapp on one request (a dict, or raw bytes) and collect its events."""

    def run(
        document: dict[str, Any] | bytes, *, python: str | None = None, timeout: float = 60
    ) -> RunnerResult:
        data = document if isinstance(document, bytes) else json.dumps(document).encode()
        done = subprocess.run(
            [python or plain_python(), "-I", str(runner_pyz)],
            input=data,
            capture_output=True,
            timeout=timeout,
        )
        stdout = done.stdout.decode("utf-8")
        return RunnerResult(done.returncode, parse_events(stdout), done.stderr.decode(), stdout)

    return run


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path / "work"


StartRunner = Callable[[dict[str, Any]], "subprocess.Popen[bytes]"]


@pytest.fixture
def start_runner(runner_pyz: Path) -> Iterator[StartRunner]:
    """Start the zipapp on a request and return the running process (killed at teardown)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(document: dict[str, Any]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [plain_python(), "-I", str(runner_pyz)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(document).encode())
        proc.stdin.close()
        proc.stdin = None  # so communicate() does not touch the closed pipe
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
