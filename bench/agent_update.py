"""Fifty agents updated at once under the update cap, with tasks queued meanwhile (issue 16).

A real appliance serves agent build v2; N polling agents (default 50), each its own supervised
``octo-agent`` process started on build v1 (launcher builds of the development agent, as the
tests use: ``tests/update_support.py``), connect to it. Then every agent is asked to update
(``POST /targets/{ref}/update-agent``, ``agent_update_cap`` at a time) and, right after, a
console script is queued on all N targets; a second one is queued half-way. Figures:

- the time from the first request until every target shows v2 with update ``none`` (goal:
  < 60 s), and until the queued scripts succeeded;
- failed updates and failed tasks (goal: zero each);
- the update time of one agent (median of the appliance's "updated ... in X s" log lines) and
  the floor it sets: that time x ceil(N / cap), the waves the cap allows.

The peer (Octopus Tentacle, Salt minions) cannot be measured here: their upgrades are
operator-driven (docs/agent.md, Self-update). Figures are from a shared 2-core machine.

Usage: ``.venv/bin/python bench/agent_update.py [--agents 50] [--cap 10]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _repo  # noqa: F401  (the repository on sys.path, first)

from tests.fleet import Fleet, FleetAgent, running_fleet, wait_until
from tests.update_support import declare, launcher, supervised_agent

V1, V2 = "1.0.0", "2.0.0"
GOAL_ALL_UPDATED_S = 60.0
_UPDATED = re.compile(r"updated to agent \S+ in ([0-9.]+) s")


def start_agents(fleet: Fleet, count: int, v1: Path) -> list[FleetAgent]:
    print(f"registering {count} polling agents ...", flush=True)
    agents = fleet.register_many([(f"agent-{i:03d}", "polling") for i in range(count)])

    def start(agent: FleetAgent) -> None:
        process = supervised_agent(agent.home, v1)
        fleet.processes.append(process)
        agent.process = process.start(timeout=120)

    print(f"starting {count} supervised agents on build {V1} ...", flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(start, agents))
    return agents


def targets(fleet: Fleet) -> list[dict[str, object]]:
    return list(fleet.call("GET", "/targets", params={"take": 1000})["items"])


def all_on(fleet: Fleet, version: str, count: int) -> bool:
    rows = targets(fleet)
    done = [t for t in rows if t["agent_version"] == version and t["update"] == "none"]
    return len(done) == count


def run(count: int, cap: int) -> int:
    with tempfile.TemporaryDirectory(prefix="octo-bench-update-") as tmp_name:
        tmp = Path(tmp_name)
        v1 = launcher(tmp / "builds" / "v1", V1)
        v2 = declare(launcher(tmp / "builds" / "v2", V2), V2)
        env = {
            "OCTO_AGENT_BUILD_FILE": str(v2),
            "OCTO_AGENT_UPDATES": "manual",
            "OCTO_AGENT_UPDATE_CAP": str(cap),
            "OCTO_TASK_CAP": "10",
        }
        with running_fleet(tmp / "fleet", serve_env=env) as fleet:
            agents = start_agents(fleet, count, v1)
            wait_until(
                lambda: sum(t["agent_version"] == V1 for t in targets(fleet)) == count,
                120,
                f"all {count} agents to connect on {V1}",
            )
            print(f"updating {count} agents to {V2}, cap {cap} ...", flush=True)
            started = time.monotonic()
            for agent in agents:
                fleet.call("POST", f"/targets/{agent.target_id}/update-agent", 202)
            tasks = [fleet.run_script("echo during-the-update")]
            half = False
            while not all_on(fleet, V2, count):
                if not half and sum(t["agent_version"] == V2 for t in targets(fleet)) >= count / 2:
                    tasks.append(fleet.run_script("echo half-way"))
                    half = True
                if time.monotonic() - started > 600:
                    break
                time.sleep(0.2)
            all_updated = time.monotonic() - started
            finished = [fleet.wait_task(task, timeout=600) for task in tasks]
            tasks_done = time.monotonic() - started
            rows = targets(fleet)
            failed_updates = [t["name"] for t in rows if str(t["update"]).startswith("failed")]
            failed_tasks = [t["id"] for t in finished if t["state"] != "success"]
            failed_targets = sum(
                1 for t in finished for r in t["targets"] if r["state"] != "success"
            )
            fleet.server.output()
            one = [float(m) for m in _UPDATED.findall(fleet.server.stderr)]
    single = statistics.median(one) if one else float("nan")
    floor = single * math.ceil(count / cap)
    print()
    print(f"agents: {count}, update cap: {cap}")
    goal = f"goal < {GOAL_ALL_UPDATED_S:g} s"
    print(f"all updated to {V2}:           {all_updated:6.1f} s   ({goal})")
    print(f"queued scripts succeeded by:  {tasks_done:6.1f} s   ({len(tasks)} tasks x {count})")
    print(f"failed updates:               {len(failed_updates):6d}     (goal 0) {failed_updates}")
    print(f"failed tasks / target runs:   {len(failed_tasks):6d} / {failed_targets}  (goal 0)")
    print(f"one agent's update (median):  {single:6.1f} s   ({len(one)} logged)")
    print(
        f"floor, median x waves:        {floor:6.1f} s   "
        f"(ratio all/floor {all_updated / floor:.2f})"
    )
    ok = all_updated < GOAL_ALL_UPDATED_S and not failed_updates and not failed_tasks
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--cap", type=int, default=10)
    args = parser.parse_args()
    return run(args.agents, args.cap)


if __name__ == "__main__":
    sys.exit(main())
