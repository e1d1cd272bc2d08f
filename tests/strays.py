"""Processes left behind under a test's directory: agents, runners and the scripts they
started, found by command line or working directory (:mod:`tests.fleet` kills them at its
close, and a test module can assert that nothing outlived it)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

import psutil


def _under(proc: psutil.Process, root: str) -> bool:
    try:
        if proc.pid == os.getpid():
            return False
        if any(root in part for part in proc.cmdline()):
            return True
        return proc.cwd().startswith(root)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def stray_processes(root: Path) -> list[psutil.Process]:
    """Live processes whose command line or working directory lies under ``root``."""
    text = str(root)
    found = []
    for proc in psutil.process_iter():
        if _under(proc, text):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.NoSuchProcess:
                pass
    return found


def describe(procs: Iterable[psutil.Process]) -> str:
    parts = []
    for proc in procs:
        try:
            parts.append(f"{proc.pid}: {' '.join(proc.cmdline())[:200]}")
        except psutil.Error:
            parts.append(f"{proc.pid}: (gone)")
    return "\n".join(parts)


def kill_strays(root: Path) -> list[str]:
    """SIGKILL whatever still runs under ``root``; what was killed, for the assertion."""
    strays = stray_processes(root)
    shown = describe(strays).splitlines()
    for proc in strays:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(strays, timeout=5)
    return shown
