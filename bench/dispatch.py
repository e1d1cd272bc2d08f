"""Agent dispatch: no-op latency, script fan-out, and 500 polling connections (issue 3).

1. **Dispatch latency** of ``agent.info`` (a no-op call) to a polling and to a listening
   agent, at the comms level (see ``bench/_latency.py``). Floor: a 256-byte echo over a plain
   Python TLS socket to another process.
2. **Fan-out**: ``echo ok`` through the script console of a real appliance on N = 1, 20, 100
   targets (4 agent processes x 25 identities, 4 in 5 polling, the rest listening), timed by
   the task's own ``created_at`` -> ``finished_at``. Floor: the runner started N times at once
   (``python -I -S runner.pyz``, request on stdin, own session: as the agent starts it), without
   appliance or agent; it also gives the CPU one runner start costs.
3. **500 polling connections** (10 processes x 50 identities, registered through
   ``POST /targets/register``): the appliance's RSS (peer: its RSS with the same 500 targets
   and no connection). Then SIGTERM and a restart on the same data dir and polling port, left
   alone: when the polling hub has all 500 again (its ``connection from`` log lines; peer:
   established sockets counted from outside with psutil). Then a second restart, with a
   console script on all 500 posted as soon as the new process is ready: when it has
   succeeded (floor: 500 runner starts' CPU over the cores). The two restarts are separate
   because 500 runners starting compete with the reconnecting for the CPU.

Everything runs on 127.0.0.1 and is stopped at the end. ``--quick``: N = 1, 20 and 50
connections, fewer calls. Figures are from a shared 2-core machine: compare ratios.

Usage: ``.venv/bin/python bench/dispatch.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import _latency
import _repo  # noqa: F401  (the repository on sys.path, first)
from _fleet import (
    AgentFleet,
    AgentSpec,
    EstablishedWatcher,
    create_key,
    hub_connections,
    mixed_specs,
    percentile,
    pid_of,
    register_agents,
    start_appliance,
    tree_rss,
    wait_established,
)
from _rows import Row, print_table
from _tasks import (
    api_client,
    appliance_cpu,
    failed_suffix,
    run_script,
    scripted,
    wait_health_checks,
)

from octo_appliance.builds.runner import RunnerBuild, prepare_runner
from tests.serve_process import ServeProcess

GOAL_FANOUT_20_S = 1.0
MB = 1024 * 1024


class Goals(NamedTuple):
    dispatch_p99_ms: float
    rss_mb: float
    reconnect_s: float
    script_s: float


#: issue 3's goals at 500 connections; issue 14's (item 4) from 5,000 on
GOALS_500 = Goals(dispatch_p99_ms=20.0, rss_mb=400.0, reconnect_s=30.0, script_s=30.0)
GOALS_5000 = Goals(dispatch_p99_ms=5.0, rss_mb=1500.0, reconnect_s=60.0, script_s=30.0)


def bench_dispatch(
    tmp: Path, runner: RunnerBuild, calls: int, goal_ms: float, idle: int = 0, per_process: int = 1
) -> list[Row]:
    """``idle``: that many more polling agents connected (and idle) while it is measured."""
    also = f", {idle} more polling agents connected" if idle else ""
    print(f"[1/3] dispatch latency: agent.info x {calls} per mode{also} ...", flush=True)
    samples = asyncio.run(_latency.measure(tmp, runner, calls, idle, per_process))
    echo = samples["echo"]
    rows = []
    for mode in ("polling", "listening"):
        values = samples[mode]
        mode = f"{mode}, {idle + 1} conn" if idle else mode
        rows.append(
            Row(
                f"dispatch p50, {mode}",
                percentile(values, 50),
                "ms",
                floor=percentile(echo, 50),
                floor_label="TLS echo p50",
            )
        )
        rows.append(
            Row(
                f"dispatch p99, {mode}",
                percentile(values, 99),
                "ms",
                goal=goal_ms,
                floor=percentile(echo, 99),
                floor_label="TLS echo p99",
            )
        )
    for row in rows:
        print(f"  {row.figure}: {row.value:.2f} ms (TLS echo {row.floor:.2f} ms)", flush=True)
    return rows


# -- 2. fan-out -----------------------------------------------------------------------------


def runner_floor(tmp: Path, runner: RunnerBuild, n: int) -> tuple[float, float]:
    """``n`` runners started at once on ``echo ok`` (no appliance, no agent): wall seconds
    and CPU seconds per runner. Each gets its own session as the agent gives it, which also
    puts it in its own scheduler autogroup (this matters on a busy machine)."""
    procs = []
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for i in range(n):
        request = {
            "protocol": 1,
            "command": "run-script",
            "arguments": {"syntax": "bash", "body": "echo ok"},
            "variables": [],
            "work_dir": str(tmp / f"floor-{n}-{i}-{time.monotonic_ns()}"),
            "context": {},
        }
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(runner.path)],  # as agent/runner_host.py does
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
        procs.append(proc)
    codes = [proc.wait() for proc in procs]
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if any(codes):
        sys.exit(f"the runner floor failed: exit codes {sorted(set(codes))}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return elapsed, cpu / n


def bench_fanout(tmp: Path, runner: RunnerBuild, sizes: Sequence[int]) -> tuple[list[Row], float]:
    """The rows, and the CPU seconds one runner start costs (median of every floor run)."""
    total = max(sizes)
    per_process = 25 if total > 25 else total
    print(
        f"[2/3] fan-out: {total} targets ({-(-total // per_process)} agent processes), "
        f"N = {', '.join(map(str, sizes))} ...",
        flush=True,
    )
    specs = mixed_specs("fan", total)
    names = [spec.name for spec in specs]
    rows, all_cpus = [], []
    server = start_appliance(tmp / "fan-data")
    try:
        key = create_key(tmp / "fan-data")
        homes = register_agents(server, key, tmp / "fan-agents", specs)
        with AgentFleet() as fleet, api_client(server, key) as client:
            fleet.start(homes, per_process)
            warm = run_script(client, names, timeout=180)  # waits for every agent; runner fetch
            if warm.state != "success":
                sys.exit(f"the warm-up task failed on {warm.failed_targets}")
            for n in sizes:
                runs, floors, cpus = [], [], []
                for _ in range(3 if n >= 100 else 5):  # alternated: both see the same noise
                    time.sleep(0.3)
                    run = run_script(client, names[:n], poll=0.05 if n <= 20 else 0.1)
                    if run.state != "success":
                        sys.exit(f"the fan-out task {run.task_id} failed on {run.failed_targets}")
                    runs.append(run.seconds)
                    time.sleep(0.3)
                    wall, cpu = runner_floor(tmp / "floor", runner, n)
                    floors.append(wall)
                    cpus.append(cpu)
                cpu = statistics.median(cpus)
                all_cpus += cpus
                print(
                    f"  N={n}: one runner costs {cpu * 1000:.0f} ms CPU, so {n} need at least "
                    f"{n * cpu / (os.cpu_count() or 1):.2f} s on {os.cpu_count()} cores",
                    flush=True,
                )
                rows.append(
                    Row(
                        f"fan-out N={n} (median of {len(runs)}; {min(runs):.2f}-{max(runs):.2f} s)",
                        statistics.median(runs),
                        "s",
                        goal=GOAL_FANOUT_20_S if n == 20 else None,
                        floor=statistics.median(floors),
                        floor_label=f"{n} runner{'s' if n > 1 else ''} at once",
                    )
                )
    finally:
        server.stop()
    return rows, statistics.median(all_cpus)


# -- 3. many polling connections ------------------------------------------------------------


#: ``OCTO_*`` settings of the appliance of [3/3] (``--task-cap``)
SETTINGS: dict[str, str] = {}


def _restart(server: ServeProcess, data: Path, port: int) -> tuple[ServeProcess, float, float]:
    """SIGTERM, then start again on the same data dir and polling port: the new process and
    the times of the SIGTERM and of its ``ready``."""
    sigterm = time.time()
    server.stop()
    exited = time.time()
    server = start_appliance(data, f"127.0.0.1:{port}", SETTINGS)
    ready = time.time()
    print(
        f"  restart: the old process exited {exited - sigterm:.2f} s after SIGTERM, "
        f"the new one was ready {ready - exited:.2f} s later",
        flush=True,
    )
    return server, sigterm, ready


def _wait_hub(server: ServeProcess, count: int, timeout: float) -> float:
    """Epoch time of the polling hub's ``count``-th ``connection from`` log line."""
    deadline = time.monotonic() + timeout
    while len(attached := hub_connections(server)) < count:
        if time.monotonic() > deadline:
            sys.exit(f"the hub logged {len(attached)} connections, not {count}")
        time.sleep(0.2)
    return sorted(attached)[count - 1]


def bench_connections(
    tmp: Path,
    count: int,
    per_process: int,
    runner_cpu: float,
    goals: Goals,
    window: int | None = None,
) -> list[Row]:
    """RSS with ``count`` polling connections; a script on all of them (first with the runner
    fetch, then again, all connected; with ``window``, a third at most that many at once);
    reconnection after two restarts: the first left alone (hub and sockets are watched), the
    second followed at once by a script on every target (its runners compete for the CPU with
    the reconnecting, so it is separate).

    Identities are dealt to the agent processes in turn (process k holds names k, k + P, ...):
    the console runs targets in name order, so a window then spreads over every process
    instead of filling one with all its runners at once."""
    processes = -(-count // per_process)
    print(
        f"[3/3] {count} polling connections ({processes} agent processes), RSS, restart ...",
        flush=True,
    )
    data = tmp / "conn-data"
    specs = [AgentSpec(f"poll-{i:04d}", "polling") for i in range(count)]
    names = [spec.name for spec in specs]
    server = start_appliance(data, settings=SETTINGS)
    try:
        key = create_key(data)
        homes = register_agents(server, key, tmp / "conn-agents", specs)
        port = server.banner.polling_port
        time.sleep(2.0)  # let the trust reloads of the registrations settle
        rss_idle = tree_rss(pid_of(server))
        with AgentFleet() as fleet:
            started = time.monotonic()
            fleet.start(
                [homes[i] for k in range(processes) for i in range(k, count, processes)],
                per_process,
            )
            wait_established(pid_of(server), port, count, 600)
            connect_s = time.monotonic() - started
            rss_connected = tree_rss(pid_of(server))
            with api_client(server, key) as client:
                checks_s, checks_failed = wait_health_checks(client, 1800)
            print(
                f"  {count} connected {connect_s:.1f} s after the agents started; the {count} "
                f"first health checks (queued at registration) were done {checks_s:.0f} s "
                f"later ({checks_failed} failed); agent processes' RSS {fleet.rss() / MB:.0f} MB, "
                f"{fleet.fork_servers()} runner fork servers (one per agent process and build)",
                flush=True,
            )
            before = appliance_cpu(server)
            time.sleep(5.0)  # all connected, nothing asked: keepalives only
            idle_share = (appliance_cpu(server) - before) / 5.0
            rss = max(rss_connected, tree_rss(pid_of(server)))
            print(
                f"  appliance RSS {rss / MB:.0f} MB with all {count} connected "
                f"({rss_idle / MB:.0f} MB before), {idle_share * 100:.1f}% CPU while they idle",
                flush=True,
            )

            cpu_before = fleet.cpu_seconds()
            server, sigterm, ready = _restart(server, data, port)
            watcher = EstablishedWatcher(pid_of(server), port, count)
            hub_all = _wait_hub(server, count, 600)
            watcher.stop()
            print(
                f"  all {count} back {hub_all - ready:.1f} s after the new process was ready; "
                f"the agents used {fleet.cpu_seconds() - cpu_before:.1f} CPU s from SIGTERM "
                "until all were back",
                flush=True,
            )

            time.sleep(5.0)
            with api_client(server, key) as client:
                scripted(server, client, names, "first script (each fetched the runner)", fleet)
                again = scripted(server, client, names, "second script, all connected", fleet)
                windowed = (
                    scripted(
                        server,
                        client,
                        names,
                        f"third script, at most {window} at once",
                        fleet,
                        window=window,
                    )
                    if window
                    else None
                )
            server, _, _ = _restart(server, data, port)
            with api_client(server, key) as client:
                after = scripted(server, client, names, "script posted at ready", fleet)
    finally:
        server.stop()
    cores = os.cpu_count() or 1
    runners = count * runner_cpu / cores
    runners_label = f"{count} runners' CPU / {cores} cores"
    return [
        Row(
            f"appliance RSS, {count} polling connections",
            rss / MB,
            "MB",
            goal=goals.rss_mb,
            floor=rss_idle / MB,
            floor_label=f"RSS, {count} targets, 0 conns",
        ),
        Row(f"  per connection ({count} conns)", (rss - rss_idle) / count / 1024, "KB"),
        Row(f"appliance CPU, {count} connected and idle", idle_share * 100, "%"),
        Row("restart: SIGTERM -> new process ready", ready - sigterm, "s"),
        Row(
            f"reconnect: ready -> hub has all {count}",
            hub_all - ready,
            "s",
            goal=goals.reconnect_s,
            floor=watcher.seconds,
            floor_label=f"{count} sockets est. (psutil)",
        ),
        Row(
            f"reconnect: SIGTERM -> hub has all {count}",
            hub_all - sigterm,
            "s",
            goal=goals.reconnect_s,
        ),
        *(
            Row(figure, value, "s", goal=goal, floor=runners, floor_label=runners_label)
            for figure, value, goal in (
                (
                    f"script on all {count}, connected{failed_suffix(again)}",
                    again.seconds,
                    goals.script_s,
                ),
                (
                    f"script on all {count} posted at ready{failed_suffix(after)}",
                    after.observed,
                    goals.reconnect_s,
                ),
            )
        ),
        *(
            [
                Row(
                    f"script on all {count}, {window} at once{failed_suffix(windowed)}",
                    windowed.seconds,
                    "s",
                    goal=goals.script_s,
                    floor=runners,
                    floor_label=runners_label,
                )
            ]
            if windowed is not None
            else []
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--agents", type=int, help="polling connections (default 500)")
    parser.add_argument("--per-process", type=int, help="identities per agent process")
    parser.add_argument(
        "--connections-only",
        action="store_true",
        help="skip the fan-out; dispatch latency with all the agents connected, then [3/3]",
    )
    parser.add_argument(
        "--task-cap",
        type=int,
        help="the appliance's task_cap in [3/3] (default 5: each registration queues a health "
        "check, so 5,000 registrations queue 5,000 tasks that run 5 at a time)",
    )
    parser.add_argument(
        "--handshakes-per-address",
        type=int,
        help="the appliance's max_pending_handshakes_per_address in [3/3] (default 32; every "
        "agent of the bench comes from 127.0.0.1, as agents behind one NAT address would)",
    )
    parser.add_argument(
        "--no-latency", action="store_true", help="with --connections-only: [3/3] only"
    )
    parser.add_argument(
        "--window",
        type=int,
        help="[3/3]: also a third script with the console's window (at most N targets at once)",
    )
    args = parser.parse_args()
    if args.task_cap:
        SETTINGS["OCTO_TASK_CAP"] = str(args.task_cap)
    if args.handshakes_per_address:
        SETTINGS["OCTO_MAX_PENDING_HANDSHAKES_PER_ADDRESS"] = str(args.handshakes_per_address)
    calls = 300 if args.quick else 2000
    sizes = (1, 20) if args.quick else (1, 20, 100)
    conns = args.agents or (50 if args.quick else 500)
    per_process = args.per_process or (25 if conns <= 50 else 50 if conns <= 500 else 250)
    goals = GOALS_5000 if conns >= 5000 else GOALS_500
    # the latency section's listener, in this process, holds every idle agent too
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    started, load = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="octo-bench-dispatch-") as tmp_name:
        tmp = Path(tmp_name)
        runner = prepare_runner(tmp / "runner")
        if args.connections_only:
            rows = []
            if not args.no_latency:
                rows = bench_dispatch(
                    tmp / "dispatch", runner, calls, goals.dispatch_p99_ms, conns - 1, per_process
                )
            _, runner_cpu = runner_floor(tmp / "floor", runner, 20)
        else:
            rows = bench_dispatch(tmp / "dispatch", runner, calls, goals.dispatch_p99_ms)
            fanout, runner_cpu = bench_fanout(tmp, runner, sizes)
            rows += fanout
        rows += bench_connections(tmp, conns, per_process, runner_cpu, goals, args.window)
    print_table(rows)
    print(
        f"\n{os.cpu_count()} cores, everything on 127.0.0.1, SQLite; "
        f"load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
        f"(other work on this machine makes figures noisy); bench took "
        f"{time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
