"""Deployments: wall time of a two-step script deployment to N = 1, 20, 100 targets (issue 4).

A real appliance (``serve``) and 100 agent identities (4 ``octo-agent run`` processes x 25
homes; 4 in 5 polling, the rest listening), registered through the API. A project with two
``run-script`` steps on role ``bench`` (the second reads an output variable of the first) is
released once; each measured deployment is restricted to N targets with ``targets``.

Per N (median of the runs):

- **wall**: ``POST /api/v1/deployments`` sent -> the poll that sees the task succeed (the
  poll runs every 20 ms); **task**: the task's own ``created_at`` -> ``finished_at``;
- **scripts**: the time the scripts themselves ran: for each step, the longest of its
  targets' own start->end stamps (each script writes both with ``date``), summed over the
  two steps (the steps run one after the other, the targets of a step side by side);
- **overhead/target**: (wall - scripts) / N: the engine's own time per target (runner
  starts, agent calls, bookkeeping);
- **floor**: the same two scripts run directly by a shell: N copies of step 1 in parallel,
  ``wait``, N copies of step 2, ``wait`` (no orchestrator, no runner, no agent);
- **runner floor**: the same, but each script run the way an agent runs it, by the runner
  (``python -I octo-runner.pyz``, the request on stdin, the agents' interpreter): N at
  once, then N again. Here all N "targets" share this machine's 2 cores, so this is the
  least a design that *starts* one runner interpreter per target and step can take. The
  agents fork their runners from a fork server of the build instead (docs/agent.md), so a
  deployment can take less than this: **engine** = wall - runner floor is then negative;
- **CPU/target**: CPU seconds the appliance process (the engine, API, comms) and the agent
  processes (not their runners) used per target during the deployment, measured with psutil:
  the engine's own cost, independent of how busy the machine is.

Before the measured runs the bench waits for the machine to settle after the warm-up
deployment (the agents start their fork servers when quiet, as they do between any two
deployments).

Goals on this machine (issue 4): under 1.5 s for 20 targets and under 5 s for 100. The
machine has 2 cores and is shared: compare ratios, not absolute figures.

Usage: ``.venv/bin/python bench/deploy.py [--quick] [--runs N]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _repo  # noqa: F401  (the repository on sys.path, first)
import httpx
import psutil
from _fleet import (
    FINAL_STATES,
    ROLE,
    AgentFleet,
    api_client,
    create_key,
    mixed_specs,
    parse_iso,
    register_agents,
    start_appliance,
    wait_for_task,
)

from octo_appliance.builds.runner import prepare_runner

GOALS = {20: 1.5, 100: 5.0}
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
    task = wait_for_task(client, task_id, 300, poll=0.02)
    if task.get("state") not in FINAL_STATES:
        sys.exit(f"deployment task {task_id} did not finish: {task.get('state')}")
    wall = time.time() - sent
    if task["state"] != "success":
        sys.exit(f"deployment task {task_id} ended {task['state']}: {task.get('error')}")
    return wall, parse_iso(task["finished_at"]) - parse_iso(task["created_at"])


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


def floor(n: int, stamps: Path) -> float:
    """The two scripts, each in a fresh bash, N at a time, one step after the other."""
    loop = (
        f'export D="{stamps}"\n'
        f"for i in $(seq 1 {n}); do M=f$i bash -c '{STEP_ONE}' & done; wait\n"
        f"for i in $(seq 1 {n}); do M=f$i bash -c '{STEP_TWO}' & done; wait\n"
    )
    started = time.perf_counter()
    subprocess.run(["bash", "-c", loop], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1 and 20 only, 2 runs")
    parser.add_argument("--runs", type=int, default=3, help="measured deployments per N")
    args = parser.parse_args()
    sizes = [1, 20] if args.quick else [1, 20, 100]
    runs = 2 if args.quick else args.runs
    total = max(sizes)
    with tempfile.TemporaryDirectory(prefix="octo-bench-deploy-") as tmp_name:
        tmp = Path(tmp_name)
        specs = mixed_specs("dep", total)
        names = [spec.name for spec in specs]
        server = start_appliance(tmp / "data")
        pyz = prepare_runner(tmp / "runner").path
        (tmp / "floor").mkdir()
        rows = []
        try:
            key = create_key(tmp / "data")
            homes = register_agents(server, key, tmp / "agents", specs)
            with AgentFleet() as fleet, api_client(server, key) as client:
                fleet.start(homes, 25)
                stamps = tmp / "stamps"
                stamps.mkdir()
                release_id = make_release(client, stamps)
                deploy(client, release_id, names)  # warm-up: connections, runner fetch
                print(f"settled after the warm-up in {fleet.settle():.1f} s", flush=True)
                for n in sizes:
                    chosen = names[:n]
                    walls, tasks, scripts, floors, runner_floors = [], [], [], [], []
                    cpu_app, cpu_agents = [], []
                    for _ in range(runs):
                        app_before, agents_before = server_cpu(server), fleet.cpu_seconds()
                        wall, task = deploy(client, release_id, chosen)
                        cpu_app.append((server_cpu(server) - app_before) / n)
                        cpu_agents.append((fleet.cpu_seconds() - agents_before) / n)
                        walls.append(wall)
                        tasks.append(task)
                        scripts.append(script_seconds(stamps, chosen))
                        floors.append(floor(n, tmp / "stamps"))
                        runner_floors.append(runner_floor(n, pyz, tmp / "floor"))
                    rows.append(
                        (n, walls, tasks, scripts, floors, runner_floors, cpu_app, cpu_agents)
                    )
        finally:
            server.stop()
    print(f"\ntwo-step script deployment, median of {runs} run(s) per N (seconds)\n")
    print(
        "   N    wall    task  scripts  overhead/target   floor  runner-floor  engine"
        "  engine/target  wall/floor  wall/runner-floor  goal  wall/goal"
        "  CPU/target: appliance  agents"
    )
    for n, walls, tasks, scripts, floors, runner_floors, cpu_app, cpu_agents in rows:
        wall = statistics.median(walls)
        script = statistics.median(scripts)
        shell = statistics.median(floors)
        runner = statistics.median(runner_floors)
        goal = GOALS.get(n)
        goal_text = f"{goal:4.1f}  {wall / goal:9.2f}" if goal else "   -          -"
        print(
            f"{n:4d}  {wall:6.3f}  {statistics.median(tasks):6.3f}  {script:7.3f}"
            f"  {(wall - script) / n:15.4f}  {shell:6.3f}  {runner:12.3f}  {wall - runner:6.3f}"
            f"  {(wall - runner) / n:13.4f}  {wall / shell:10.1f}  {wall / runner:17.2f}"
            f"  {goal_text}  {statistics.median(cpu_app):19.4f}"
            f"  {statistics.median(cpu_agents):6.4f}"
        )


if __name__ == "__main__":
    main()
