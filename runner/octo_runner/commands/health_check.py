"""``health-check``: report the target's facts, then run the machine policy's script if any.

Arguments (all optional): ``agent_version``; ``paths`` (``{"work": dir, "cache": dir}``, whose
free space is reported); ``min_free_disk_bytes`` (less free space on a reported path is a
warning); ``script`` (``{"syntax", "body"}``, run like ``run-script``). The result carries
``status``: Healthy, HealthyWithWarnings (a warning or error was logged: low disk, or the
script's warnings and stderr) or Unhealthy (the script failed); and ``details`` (the facts).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
from typing import Any

from .. import PROTOCOL_VERSION, __version__
from ..cancellation import CancelToken
from ..errors import BadInputError
from ..protocol import Arguments, EventWriter, Request
from ..scripts import host
from . import Outcome, script_outcome
from .run_script import script_job

_MIB = 1024 * 1024


def run(request: Request, events: EventWriter, cancel: CancelToken) -> Outcome:
    args = Arguments(request.arguments, "health-check")
    paths = args.mapping("paths") or {}
    for key, value in paths.items():
        if not isinstance(value, str) or not value:
            raise BadInputError(f"health-check: paths.{key} must be a directory path")
    min_free = args.number("min_free_disk_bytes", 0)
    details = collect_facts(paths, args.optional_string("agent_version"))
    warnings_before = events.counts["warning"] + events.counts["error"]
    _report(details, events, min_free)

    script = args.mapping("script")
    outcome: Outcome | None = None
    if script is not None:
        events.log("info", "running the health check script")
        job = script_job(script, request, "health-check")
        outcome = script_outcome(host.run(job, events, cancel))

    warned = events.counts["warning"] + events.counts["error"] > warnings_before
    if outcome is not None and not outcome.success:
        status = "Unhealthy"
        exit_code = outcome.exit_code or 1
        message = f"Unhealthy: {outcome.message}"
        extra = dict(outcome.extra)
    else:
        status = "HealthyWithWarnings" if warned else "Healthy"
        exit_code, message, extra = 0, status, {}
    return Outcome(
        exit_code, status != "Unhealthy", message, {**extra, "status": status, "details": details}
    )


def collect_facts(paths: dict[str, str], agent_version: str | None) -> dict[str, Any]:
    total, available = memory()
    return {
        "os": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "memory": {"total_bytes": total, "available_bytes": available},
        "disks": {name: disk(path) for name, path in sorted(paths.items())},
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "runner_version": __version__,
        "protocol": PROTOCOL_VERSION,
        "agent_version": agent_version,
    }


def memory() -> tuple[int | None, int | None]:
    """Total and available memory in bytes, from /proc/meminfo or sysconf; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        kib = {key: int(fields[key].split()[0]) * 1024 for key in ("MemTotal", "MemAvailable")}
        return kib["MemTotal"], kib["MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):
        return _sysconf_memory()


def _sysconf_memory() -> tuple[int | None, int | None]:
    pages: dict[str, int | None] = {}
    for name in ("SC_PAGE_SIZE", "SC_PHYS_PAGES", "SC_AVPHYS_PAGES"):
        try:
            pages[name] = os.sysconf(name)
        except (ValueError, OSError, AttributeError):
            pages[name] = None
    size, total, available = pages.values()
    if size is None:
        return None, None
    return (
        None if total is None else size * total,
        None if available is None else size * available,
    )


def disk(path: str) -> dict[str, Any]:
    """Free and total bytes of the file system holding ``path`` (or its nearest parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        usage = shutil.disk_usage(probe)
    except OSError as exc:
        return {"path": path, "error": exc.strerror or str(exc)}
    return {"path": path, "free_bytes": usage.free, "total_bytes": usage.total}


def _report(details: dict[str, Any], events: EventWriter, min_free: float) -> None:
    python = details["python"]
    events.log("info", f"OS: {details['os']} ({details['machine']}), host {details['hostname']}")
    events.log("info", f"CPUs: {details['cpu_count']}")
    total, available = details["memory"]["total_bytes"], details["memory"]["available_bytes"]
    events.log("info", f"Memory: {_mib(total)} total, {_mib(available)} available")
    for name, usage in details["disks"].items():
        if "error" in usage:
            events.log("warning", f"Disk ({name}, {usage['path']}): {usage['error']}")
            continue
        events.log(
            "info",
            f"Disk ({name}, {usage['path']}): {_mib(usage['free_bytes'])} free "
            f"of {_mib(usage['total_bytes'])}",
        )
        if usage["free_bytes"] < min_free:
            events.log("warning", f"Disk ({name}) has less than {_mib(int(min_free))} free")
    events.log(
        "info",
        f"Python {python['version']} ({python['implementation']}), "
        f"runner {details['runner_version']}, agent {details['agent_version'] or 'unknown'}",
    )


def _mib(value: int | None) -> str:
    return "unknown" if value is None else f"{value // _MIB} MiB"
