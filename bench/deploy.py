"""Deployments: wall time of a two-step script deployment to N = 1, 20, 100 targets (issues 4, 14).

A real appliance (``serve``) and 100 agent identities (4 ``octo-agent run`` processes x 25
homes; 4 in 5 polling, the rest listening), registered through the API. A project with two
``run-script`` steps on role ``bench`` (the second reads an output variable of the first) is
released once; each measured deployment is restricted to N targets with ``targets``.

Per N (median of the runs), with the load average (1 min) when the runs started:

- **wall**: ``POST /api/v1/deployments`` sent -> the task's ``finished_at`` (the appliance's
  clock, on this machine). The bench polls the task every 0.2 s: at every 20 ms its own
  ``GET /tasks/{id}`` cost ~10% of the appliance's CPU at N = 100. **task**: the task's own
  ``created_at`` -> ``finished_at``;
- **scripts**: the time the scripts themselves ran: for each step, the longest of its
  targets' own start->end stamps (each script writes both with ``date``), summed over the
  two steps (the steps run one after the other, the targets of a step side by side);
- **floor**: the same two scripts run directly by a shell: N copies of step 1 in parallel,
  ``wait``, N copies of step 2, ``wait`` (no orchestrator, no runner, no agent); its wall
  and its CPU (the shells' and their children's, ``os.times``);
- **CPU**: CPU seconds of every process involved, measured with psutil: the appliance (the
  engine, API, comms), the agent processes, and their runners with the scripts (forked by
  the agents' fork servers, whose children times hold them). On this 2-core machine a
  deployment cannot take less wall time than its CPU / 2, so the goal needs CPU below
  **2 x goal** (the **budget**); ``CPU/budget`` above 1 means the goal is out of reach here
  whatever the scheduling;
- **runner floor** (``--runner-floor``): the same, but each script run by the runner
  started from scratch (``python -I octo-runner.pyz``, the request on stdin): the least a
  design that *starts* one runner interpreter per target and step can take. The agents fork
  their runners from a fork server of the build instead (docs/agent.md); the bench prints
  how many fork servers were up (one per identity; an agent starts its fork server when
  quiet, or after 2 s without a task on a machine that is never quiet).

Before the measured runs the bench waits, after the warm-up deployment, for every identity's
fork server (as an agent has between any two deployments).

Goals on this machine: under 1.5 s for 20 targets (issue 4) and under 2.5 s for 100 (issue
14). The machine has 2 cores and is shared: compare ratios and CPU, not absolute figures.

Usage: ``.venv/bin/python bench/deploy.py [--quick] [--runs N] [--sizes 1,20,100]
[--runner-floor]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _repo  # noqa: F401  (the repository on sys.path, first)
import httpx
import psutil
from _fleet import (
    FINAL_STATES,
    ROLE,
    AgentFleet,
    create_key,
    mixed_specs,
    register_agents,
    start_appliance,
)
from _tasks import (
    api_client,
    parse_iso,
    wait_for_task,
)

from octo_appliance.builds.runner import prepare_runner

GOALS = {20: 1.5, 100: 2.5}
#: cores of the machine the goals are for (the CPU budget is cores x goal)
CORES = 2
STEP_ONE = 'date +%s.%N > "$D/one-$M.start"; echo "one on $M"; date +%s.%N > "$D/one-$M.end"'
STEP_TWO = 'date +%s.%N > "$D/two-$M.start"; echo "two on $M"; date +%s.%N > "$D/two-$M.end"'


def step_body(template: str, stamps: Path) -> str:
    """The script as a deployment step: ``$D`` and ``$M`` from variables."""
    prefix = f'D="{stamps}"; M="#{{Octo.Machine.Name}}"\n'
    return prefix + template + "\nset_octovariable Done yes"


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, "/api/v1" + path, **kwargs)
    if response.status_code not in (200, 201):
        sys.exit(f"{method} {path} failed: {response.status_code} {response.text}")
    return response.json()


def make_release(client: httpx.Client, stamps: Path) -> str:
    project = call(client, "POST", "/projects", json={"name": "Bench deploy"})
    steps = [
        {
            "name": "One",
            "type": "run-script",
            "roles": [ROLE],
            "properties": {"syntax": "bash", "body": step_body(STEP_ONE, stamps)},
        },
        {
            "name": "Two",
            "type": "run-script",
            "roles": [ROLE],
            "properties": {
                "syntax": "bash",
                "body": step_body(STEP_TWO, stamps) + " #{Octo.Action[One].Output.Done}",
            },
        },
    ]
    call(client, "PUT", f"/projects/{project['id']}/process", json={"steps": steps})
    release = call(client, "POST", f"/projects/{project['id']}/releases", json={})
    return str(release["id"])


def deploy(client: httpx.Client, release_id: str, names: list[str]) -> tuple[float, float]:
    """One deployment to ``names``; ``(wall seconds, task seconds)``."""
    sent = time.time()
    body = {"release": release_id, "environment": "Bench", "targets": names}
    task_id = call(client, "POST", "/deployments", json=body)["task_id"]
    task = wait_for_task(client, task_id, 300, poll=0.2)
    if task.get("state") not in FINAL_STATES:
        sys.exit(f"deployment task {task_id} did not finish: {task.get('state')}")
    if task["state"] != "success":
        sys.exit(f"deployment task {task_id} ended {task['state']}: {task.get('error')}")
    finished = parse_iso(task["finished_at"])
    return finished - sent, finished - parse_iso(task["created_at"])


def script_seconds(stamps: Path, names: list[str]) -> float:
    """Sum over the two steps of the longest start->end of a target's own script."""
    total = 0.0
    for step in ("one", "two"):
        spans = [
            float((stamps / f"{step}-{n}.end").read_text())
            - float((stamps / f"{step}-{n}.start").read_text())
            for n in names
        ]
        total += max(spans)
    return total


def floor(n: int, stamps: Path) -> tuple[float, float]:
    """The two scripts, each in a fresh bash, N at a time, one step after the other;
    ``(wall seconds, CPU seconds)``."""
    loop = (
        f'export D="{stamps}"\n'
        f"for i in $(seq 1 {n}); do M=f$i bash -c '{STEP_ONE}' & done; wait\n"
        f"for i in $(seq 1 {n}); do M=f$i bash -c '{STEP_TWO}' & done; wait\n"
    )
    before = os.times()
    started = time.perf_counter()
    subprocess.run(["bash", "-c", loop], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = after.children_user + after.children_system
    return wall, cpu - (before.children_user + before.children_system)


def server_cpu(server: Any) -> float:
    times = psutil.Process(server.process.pid).cpu_times()
    return float(times.user + times.system)


def runner_floor(n: int, pyz: Path, work: Path) -> float:
    """Both scripts through the runner itself, N processes at once per step."""
    started = time.perf_counter()
    for step, template in (("one", STEP_ONE), ("two", STEP_TWO)):
        processes = []
        for i in range(n):
            body = f'D="{work}"; M="r{i}"\n' + template
            request = {
                "protocol": 1,
                "command": "run-script",
                "arguments": {"syntax": "bash", "body": body, "substitute": False},
                "variables": [],
                "work_dir": str(work / f"{step}-{i}"),
            }
            process = subprocess.Popen(
                [sys.executable, "-I", str(pyz)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
            )
            processes.append((process, json.dumps(request).encode()))
        for process, payload in processes:
            assert process.stdin is not None
            process.stdin.write(payload)
            process.stdin.close()
        for process, _ in processes:
            if process.wait() != 0:
                sys.exit("the runner floor failed")
    return time.perf_counter() - started


@dataclass
class Runs:
    """The measured runs of one N."""

    n: int
    load: float = 0.0
    walls: list[float] = field(default_factory=list)
    tasks: list[float] = field(default_factory=list)
    scripts: list[float] = field(default_factory=list)
    floors: list[tuple[float, float]] = field(default_factory=list)
    runner_floors: list[float] = field(default_factory=list)
    #: (appliance, agent processes, runners + scripts) CPU seconds per run
    cpu: list[tuple[float, float, float]] = field(default_factory=list)


def measure(
    client: httpx.Client, server: Any, fleet: AgentFleet, release_id: str, chosen: list[str]
) -> tuple[float, float, tuple[float, float, float]]:
    """One deployment: wall, task seconds and the CPU of each kind of process."""
    app, agents, tree = server_cpu(server), fleet.cpu_seconds(), fleet.tree_cpu_seconds()
    wall, task = deploy(client, release_id, chosen)
    time.sleep(0.2)  # the last runners reaped by their fork servers
    app = server_cpu(server) - app
    agents = fleet.cpu_seconds() - agents
    return wall, task, (app, agents, fleet.tree_cpu_seconds() - tree - agents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1 and 20 only, 2 runs")
    parser.add_argument("--runs", type=int, default=3, help="measured deployments per N")
    parser.add_argument("--sizes", help="comma-separated N (default 1,20,100)")
    parser.add_argument(
        "--runner-floor", action="store_true", help="also the runner started from scratch"
    )
    args = parser.parse_args()
    sizes = [1, 20] if args.quick else [1, 20, 100]
    if args.sizes:
        sizes = [int(size) for size in args.sizes.split(",")]
    runs = 2 if args.quick else args.runs
    total = max(sizes)
    rows: list[Runs] = []
    with tempfile.TemporaryDirectory(prefix="octo-bench-deploy-") as tmp_name:
        tmp = Path(tmp_name)
        specs = mixed_specs("dep", total)
        names = [spec.name for spec in specs]
        server = start_appliance(tmp / "data")
        pyz = prepare_runner(tmp / "runner").path
        (tmp / "floor").mkdir()
        try:
            key = create_key(tmp / "data")
            homes = register_agents(server, key, tmp / "agents", specs)
            with AgentFleet() as fleet, api_client(server, key) as client:
                fleet.start(homes, 25)
                stamps = tmp / "stamps"
                stamps.mkdir()
                release_id = make_release(client, stamps)
                deploy(client, release_id, names)  # warm-up: connections, runner fetch
                waited = fleet.wait_for_fork_servers(total)
                print(f"{fleet.fork_servers()} fork servers up after {waited:.1f} s", flush=True)
                for n in sizes:
                    row = Runs(n, load=os.getloadavg()[0])
                    for _ in range(runs):
                        wall, task, cpu = measure(client, server, fleet, release_id, names[:n])
                        row.walls.append(wall)
                        row.tasks.append(task)
                        row.cpu.append(cpu)
                        row.scripts.append(script_seconds(stamps, names[:n]))
                        row.floors.append(floor(n, tmp / "stamps"))
                        if args.runner_floor:
                            row.runner_floors.append(runner_floor(n, pyz, tmp / "floor"))
                    rows.append(row)
                servers = fleet.fork_servers()
        finally:
            server.stop()
    print(f"\ntwo-step script deployment, median of {runs} run(s) per N (seconds); runner fork")
    print(f"servers up at the end: {servers} of {total} identities\n")
    report(rows)


def report(rows: list[Runs]) -> None:
    print(
        "   N  load    wall    task  scripts   floor  wall/floor  goal  wall/goal"
        "  | CPU: appliance  agents  runners+scripts   total  budget  CPU/budget"
        "  floor CPU  runner-floor"
    )
    for row in rows:
        wall = statistics.median(row.walls)
        shell = statistics.median(wall for wall, _ in row.floors)
        goal = GOALS.get(row.n)
        goal_text = f"{goal:4.1f}  {wall / goal:9.2f}" if goal else "   -          -"
        cpu = [statistics.median(run[i] for run in row.cpu) for i in range(3)]
        total = statistics.median(sum(run) for run in row.cpu)
        budget = CORES * goal if goal else None
        budget_text = f"{budget:6.1f}  {total / budget:10.2f}" if budget else "     -           -"
        runner = f"{statistics.median(row.runner_floors):12.3f}" if row.runner_floors else "-"
        print(
            f"{row.n:4d}  {row.load:4.1f}  {wall:6.3f}  {statistics.median(row.tasks):6.3f}"
            f"  {statistics.median(row.scripts):7.3f}  {shell:6.3f}  {wall / shell:10.1f}"
            f"  {goal_text}  | {cpu[0]:14.3f}  {cpu[1]:6.3f}  {cpu[2]:15.3f}  {total:6.3f}"
            f"  {budget_text}  {statistics.median(c for _, c in row.floors):9.3f}  {runner:>12}"
        )


if __name__ == "__main__":
    main()
