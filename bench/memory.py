"""Where the appliance's memory goes with N polling agents: connected, then after N tasks.

Starts ``serve`` with ``OCTO_DEBUG_MEMORY`` (reports on SIGUSR2, tracemalloc from the first:
``octo_appliance/web/memory_report.py``), registers N polling targets, and takes the
appliance's RSS (psutil) and a report: registered, none connected (tracing starts); all N
connected after their N first health checks (queued by the registrations). Then a restarted
appliance on the same data: none connected (tracing starts), then all N connected with no
task run. Per connection: the restarted process's difference over N; per registration and
its finished health check: the first process's RSS over the restarted one's, all connected,
over N. The agents run in processes of ``--per-process`` identities without runner fork
servers (``bench/_unforked_agent.py``: the agents' memory is not what is measured).
``--no-trace``: the reports without tracemalloc (its memory and CPU distort the RSS, and
under it the checks time out on a busy machine); ``--rss-only``: no reports (for a tree
without the hook: run with ``PYTHONPATH=<other checkout>`` to measure that tree).

Usage: ``.venv/bin/python bench/memory.py --agents 1000 --per-process 250 [--no-trace]``
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import _repo  # noqa: F401  (the repository on sys.path, first)
from _fleet import (
    AgentFleet,
    AgentSpec,
    create_key,
    pid_of,
    register_agents,
    start_appliance,
    tree_rss,
    wait_established,
)
from _tasks import api_client, wait_health_checks

from tests.serve_process import ServeProcess

MB = 1024 * 1024
AGENT = (sys.executable, str(Path(__file__).with_name("_unforked_agent.py")))


def report(pid: int, path: Path | None, label: str) -> float:
    """RSS in MB now (and a report in ``path`` when tracing), printed with ``label``."""
    if path is not None:
        size = path.stat().st_size if path.exists() else 0
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 120
        while (path.stat().st_size if path.exists() else 0) == size:
            if time.monotonic() > deadline:
                sys.exit("no memory report within 120 s")
            time.sleep(0.5)
        time.sleep(2.0)  # the report is written in one go, but let it finish
        with path.open("a", encoding="utf-8") as out:
            out.write(f"^^^ {label}\n")
    rss = tree_rss(pid) / MB
    print(f"  {label}: appliance RSS {rss:.0f} MB", flush=True)
    return rss


def _restart(server: ServeProcess, data: Path, port: int, settings: dict[str, str]) -> ServeProcess:
    server.stop()
    server = start_appliance(data, f"127.0.0.1:{port}", settings)
    time.sleep(3.0)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--per-process", type=int, default=250)
    parser.add_argument("--task-cap", type=int, default=100)
    parser.add_argument("--no-trace", action="store_true", help="reports without tracemalloc")
    parser.add_argument("--rss-only", action="store_true", help="no reports")
    parser.add_argument("--report", type=Path, help="where the reports go (default: printed)")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="octo-bench-memory-") as tmp_name:
        tmp = Path(tmp_name)
        trace = None if args.rss_only else (args.report or tmp / "memory.txt").absolute()
        settings = {"OCTO_TASK_CAP": str(args.task_cap)}
        if trace is not None:
            settings["OCTO_DEBUG_MEMORY"] = str(trace)
            settings["OCTO_DEBUG_MEMORY_TRACE"] = "0" if args.no_trace else "1"
        n = args.agents
        specs = [AgentSpec(f"poll-{i:04d}", "polling") for i in range(n)]
        server = start_appliance(tmp / "data", settings=settings)
        try:
            key = create_key(tmp / "data")
            homes = register_agents(server, key, tmp / "agents", specs)
            port = server.banner.polling_port
            time.sleep(3.0)
            report(pid_of(server), trace, f"{n} registered, none connected")
            with AgentFleet() as fleet:
                fleet.start(homes, args.per_process, command=AGENT)
                wait_established(pid_of(server), port, n, 600)
                with api_client(server, key) as client:
                    checks_s, failed = wait_health_checks(client, 1800)
                checked = report(pid_of(server), trace, f"{n} connected, their checks done")
                print(f"  health checks: {checks_s:.0f} s, {failed} failed", flush=True)
            # the same targets in a new process, with no task run: none, then all connected
            server = _restart(server, tmp / "data", port, settings)
            idle = report(pid_of(server), trace, f"restarted, {n} targets, none connected")
            with AgentFleet() as fleet:
                fleet.start(homes, args.per_process, command=AGENT)
                wait_established(pid_of(server), port, n, 600)
                time.sleep(5.0)
                connected = report(pid_of(server), trace, f"restarted, {n} connected, no task")
        finally:
            server.stop()
        if trace is not None and not args.report:
            print(trace.read_text())
    print(
        f"\nper connection: {(connected - idle) * 1024 / n:.1f} KB; per finished health check: "
        f"{(checked - connected) * 1024 / n:.1f} KB (with its registration: the first "
        f"process's RSS over the restarted one's with all connected); "
        f"load {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
