"""CPU seconds a fan-out run used, for every tool alike (issue 14: "prefer CPU seconds").

A run's CPU is what the bench's finished children used (the floor's and the peers' processes:
``RUSAGE_CHILDREN``) plus what its long-lived descendants used meanwhile (Octo's appliance,
agents and fork servers: their own time and that of the children they reaped, such as forked
runners with their scripts). Nothing is counted twice: a process's children times hold only
descendants that have ended, and ended processes are not among the living ones sampled.
The living ones are told apart by role (appliance, agents, runners: a fork server and the
runners it forked), so a run shows where Octo's CPU went.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections import defaultdict

import psutil

#: (the ended children's CPU, {(pid, start time): (role, CPU with reaped children)})
Sample = tuple[float, dict[tuple[int, float], tuple[str, float]]]


def role(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    if " serve " in text or text.endswith(" serve"):
        return "appliance"
    if "--fork-server" in text or ".pyz" in text:
        return "runners"
    if "agent" in text:
        return "agents"
    return "other"


def sample() -> Sample:
    """The bench's ended children's CPU, and each living descendant's (with its reaped ones)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    living: dict[tuple[int, float], tuple[str, float]] = {}
    for process in psutil.Process(os.getpid()).children(recursive=True):
        with contextlib.suppress(psutil.Error), process.oneshot():
            times = process.cpu_times()
            seconds = times.user + times.system + times.children_user + times.children_system
            living[(process.pid, process.create_time())] = (role(process.cmdline()), seconds)
    return usage.ru_utime + usage.ru_stime, living


def by_role(before: Sample, after: Sample) -> dict[str, float]:
    """CPU seconds per role between two samples (``ended``: processes reaped meanwhile; a
    descendant born meanwhile counts in full)."""
    roles: dict[str, float] = defaultdict(float)
    roles["ended"] = after[0] - before[0]
    for key, (name, seconds) in after[1].items():
        roles[name] += seconds - before[1].get(key, (name, 0.0))[1]
    return dict(roles)


def used(before: Sample, after: Sample) -> float:
    """CPU seconds between two samples, all roles."""
    return sum(by_role(before, after).values())


def describe(roles: dict[str, float], n: int) -> str:
    """``appliance 0.030 agents 0.010 ...`` per target, the roles that used any."""
    return " ".join(f"{name} {value / n:.3f}" for name, value in roles.items() if value >= 0.0005)
