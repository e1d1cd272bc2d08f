"""Hardening of the appliance's own process.

``prctl(PR_SET_DUMPABLE, 0)`` at start: another process of the same user (a script the
built-in worker runs, were it ever to run as that user) can then read neither
``/proc/<appliance>/environ`` (where a password given by environment lives) nor its memory,
and cannot attach a debugger; no core file is written either. Linux only; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger("octo_appliance.security")

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def make_undumpable() -> bool:
    """Mark this process not dumpable; whether it took effect (False off Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.warning("cannot make the appliance process undumpable: %s", exc)
        return False
    return True


def is_dumpable() -> bool:
    """The process's dumpable flag (True off Linux, where there is none to clear)."""
    if not sys.platform.startswith("linux"):
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


__all__ = ["is_dumpable", "make_undumpable"]
