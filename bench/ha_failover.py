"""Time from ``kill -9`` of the node running a deployment to its task failed (naming the node)
on the surviving node, with the default ``node_dead_after_seconds`` (30) and a shorter one.

Two real ``serve`` nodes on a throwaway PostgreSQL database (tests/ha/cluster.py), a listening
agent, a deployment whose script waits; when the script runs, the node running the task is
killed and the survivor's ``GET /api/v1/tasks/{id}`` is polled every 0.1 s until ``failed``.
The time also shows when the node list marks the node dead (same transaction). Goal (issue 13):
under 60 s; Octopus: a dead node's tasks stay executing until an hour-long timeout.

Usage: ``.venv/bin/python bench/ha_failover.py [--dead-after 30 10]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _repo  # noqa: F401 (puts this checkout on sys.path)

from tests.fleet import wait_until
from tests.ha.cluster import running_cluster

GOAL_SECONDS = 60.0


def one_run(root: Path, dead_after: int) -> tuple[float, str]:
    record = root / "record"
    env = {"OCTO_NODE_DEAD_AFTER_SECONDS": str(dead_after)}
    with running_cluster(root / "cluster", count=2, **env) as cluster:
        agent = cluster.fleet.register("web-1", "listening")
        cluster.fleet.start_agents([agent])
        body = f'echo started >> "{record}"\nsleep 600\n'
        payload = {"syntax": "bash", "body": body, "targets": ["web-1"]}
        task_id = cluster.call("node-1", "POST", "/scripts", 202, json=payload)["task_id"]
        victim = cluster.wait_running("node-1", task_id)
        survivor = "node-2" if victim == "node-1" else "node-1"
        wait_until(record.exists, 60, "the script to start")
        killed = time.monotonic()
        cluster.kill(victim)
        task = cluster.wait_final(survivor, task_id, timeout=dead_after + 60)
        elapsed = time.monotonic() - killed
        return elapsed, str(task["error"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead-after", type=int, nargs="+", default=[30, 10])
    args = parser.parse_args()
    print(f"{'node_dead_after_seconds':>24} {'kill -9 to failed':>18}  load average (1, 5, 15 min)")
    worst = 0.0
    for dead_after in args.dead_after:
        with tempfile.TemporaryDirectory(prefix="octo-ha-bench-") as tmp:
            elapsed, error = one_run(Path(tmp), dead_after)
        worst = max(worst, elapsed)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{dead_after:>24} {elapsed:>16.1f} s  {load}")
        print(f"{'':>24} error: {error}")
    print(f"goal: < {GOAL_SECONDS:.0f} s: {'met' if worst < GOAL_SECONDS else 'MISSED'}")
    return 0 if worst < GOAL_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
