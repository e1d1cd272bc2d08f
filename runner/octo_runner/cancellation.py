"""Cancellation: SIGTERM (or SIGINT) to the runner asks the running work to stop.

Signal handlers only set a flag; the script host polls it and kills the script's process
group, so no work happens inside a signal handler. On Linux the runner also becomes a
"child subreaper", so processes a script leaves behind are re-parented to the runner instead
of to PID 1: the runner can then reap them after a cancel, which matters in containers whose
init never reaps orphans (their zombies would otherwise keep the process group alive).
It also asks for SIGTERM when its parent (the agent) dies, so an agent that crashes or is
SIGKILLed does not leave its scripts running unsupervised beside the tasks its restart runs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
#: the C library's ``prctl``, loaded once (``load_prctl``): a fork server loads it before it
#: forks, so its runners do not import ``ctypes`` each (~3 ms of CPU per runner)
_prctl: Any = None


class CancelToken:
    """A one-way flag with the reason it was raised."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def install_signal_handlers(token: CancelToken) -> None:
    """Route SIGTERM and SIGINT to ``token`` (call from the main thread)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        token.cancel(f"canceled by {signal.Signals(signum).name}")

    for name in ("SIGTERM", "SIGINT"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, handler)


def load_prctl() -> Any:
    """The C library's ``prctl`` (Linux), or ``None`` where there is none."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError, ImportError):
            _prctl = False
    return _prctl or None


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux only); return whether it worked."""
    prctl = load_prctl()
    return prctl is not None and int(prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def stop_with_parent(parent_pid: int) -> bool:
    """SIGTERM this process (a cancel) when the parent ``parent_pid`` dies (Linux only).

    ``parent_pid`` is read at start: a parent that died before the request took effect shows
    as a changed parent pid, and the runner cancels itself at once.
    """
    prctl = load_prctl()
    if prctl is None or int(prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)) != 0:
        return False
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)
    return True
