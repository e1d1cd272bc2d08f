"""What the tests that start a real program (:mod:`tests.serve_process`, the agent process in
:mod:`tests.agent.support`) do alike: stop it, read the log file it writes, and look at the
processes below it."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

import psutil


def stop_process(process: subprocess.Popen[str] | None, sig: int, timeout: float) -> int:
    """Send ``sig`` (unless it already ended) and return its exit code, SIGKILL after
    ``timeout``; 0 for a process never started."""
    if process is None:
        return 0
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


def read_log(log: IO[bytes] | IO[str]) -> str:
    """All the child has written to ``log`` so far. pread, not seek + read: the child writes at
    the offset of the same open file, so moving it while the child logs loses lines."""
    fd = log.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")


def process_name(process: psutil.Process) -> str:
    """Its name, or "" once it has gone."""
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return ""


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie (a child not yet reaped counts as gone)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def has_sleep(process: psutil.Process) -> bool:
    """Whether a ``sleep`` runs below it: the scripts of the process tests sleep."""
    return any(process_name(p) == "sleep" for p in process.children(recursive=True))


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without ``OCTO_*`` (the caller's settings must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
    env.update(extra)
    return env


def run_module(
    module: str, *args: str, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` to its end in :func:`clean_env` plus ``env``; its output
    captured as text, its exit code left to the caller."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=timeout,
        check=False,
    )


class ChildFailed(Exception):
    """The child ended, or said nothing for too long, before the line the test waits for."""


class StdoutPump:
    """A child's stdout lines, handed on by a thread of their own (the pipe is the thread's,
    closed when the child ends), so that waiting for one can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout as stdout:
            for raw in stdout:
                self.lines.put(raw.rstrip("\n"))
        self.lines.put(None)

    def until(
        self, ready: Callable[[str], bool], timeout: float, seen: Callable[[str], None]
    ) -> None:
        """Read lines until a ``ready`` one, handing the others to ``seen``. After ``timeout``
        seconds without it the child is killed; either way :class:`ChildFailed` says why."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                stop_process(self.process, signal.SIGKILL, 10)
                raise ChildFailed(f"nothing ready within {timeout} s") from None
            if line is None:
                self.process.wait()
                raise ChildFailed(f"it exited with {self.process.returncode} before it was ready")
            if ready(line):
                return
            seen(line)

    def join(self) -> None:
        self.thread.join(timeout=10)  # the child is gone: its stdout ends
