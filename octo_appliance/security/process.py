"""Hardening of the appliance's own process, and what it may do as another account.

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


#: capability numbers (linux/capability.h) a non-root appliance needs to run the worker as
#: another account: chown its files to it, set its gid and uid
CAP_CHOWN, CAP_SETGID, CAP_SETUID = 0, 6, 7
SWITCH_CAPABILITIES = (CAP_CHOWN, CAP_SETGID, CAP_SETUID)


def effective_capabilities(status: str | None = None) -> int:
    """This process's effective capability set (``CapEff`` of ``/proc/self/status``)."""
    if status is None:
        try:
            status = open("/proc/self/status", encoding="ascii").read()  # noqa: SIM115
        except OSError:
            return 0
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def can_switch_users(status: str | None = None) -> bool:
    """Root, or a service given exactly the capabilities to hand files to another account
    and start a process as it (the systemd unit of ``octo-appliance install``)."""
    if os.geteuid() == 0:
        return True
    caps = effective_capabilities(status)
    return all(caps >> cap & 1 for cap in SWITCH_CAPABILITIES)


__all__ = ["can_switch_users", "effective_capabilities", "is_dumpable", "make_undumpable"]
