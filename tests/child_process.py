"""What the tests that start a real program (:mod:`tests.serve_process`, the agent process in
:mod:`tests.agent.support`) do alike: stop it, read the log file it writes, and look at the
processes below it."""

from __future__ import annotations

import os
import subprocess
import sys
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
