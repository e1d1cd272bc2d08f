"""A task's per-target results at N targets, in process (SQLite): is any cost per target O(N)?

For each N (default 500 and 5,000), one ``script`` task whose arguments name N targets:

- the CPU seconds per target result the engine's store writes (``save_target_results``, one
  result per call: the worst case, the engine joins a burst into one commit), first
  ``pending`` (insert) then ``success`` (update): flat in N means a result writes its own row
  and nothing else;
- the CPU of one ``GET /api/v1/tasks/{id}`` body (``task_detail_json``) with every target's
  result, and with ``targets=False`` (what a client waiting for the end polls). The full read
  is one row per target per poll: a client polling every 0.25 s while a script on N targets
  runs (its duration grows with N on a busy machine) costs the appliance O(N) per target,
  the growth ``bench/dispatch.py`` measured at 5,000 before its wait polled without targets.

Usage: ``.venv/bin/python bench/task_results.py [--sizes 500,5000]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _repo  # noqa: F401  (the repository on sys.path, first)
from _rows import Row, print_table

from octo_appliance.api.tasks import task_detail_json
from octo_appliance.db.base import utcnow
from octo_appliance.db.tasks import ServerTask
from octo_appliance.engine.tasks import store
from octo_appliance.engine.tasks.creation import create_task
from octo_appliance.engine.tasks.store import TargetResult
from octo_appliance.testing import start_test_appliance

DETAIL_READS = 5


def measure(octo_dir: Path, sizes: list[int]) -> list[Row]:
    octo = start_test_appliance(octo_dir)
    db, vault = octo.appliance.db, octo.appliance.vault
    rows: list[Row] = []
    try:
        for n in sizes:
            ids = [f"tgt_{i:05d}" for i in range(n)]
            task_id = create_task(vault, "script", f"bench {n}", {"target_ids": ids})
            per_state: dict[str, float] = {}
            for state in ("pending", "success"):
                cpu = time.process_time()
                for i, target_id in enumerate(ids):
                    done = utcnow() if state == "success" else None
                    result = TargetResult(target_id, f"t-{i}", state, finished_at=done)
                    store.save_target_results(db, vault, task_id, [result])
                per_state[state] = (time.process_time() - cpu) / n
            task = ServerTask.get_by_id(task_id)
            cpu = time.process_time()
            for _ in range(DETAIL_READS):
                task_detail_json(task)
            full = (time.process_time() - cpu) / DETAIL_READS
            cpu = time.process_time()
            for _ in range(DETAIL_READS):
                task_detail_json(task, targets=False)
            brief = (time.process_time() - cpu) / DETAIL_READS
            rows += [
                Row(f"N={n}: insert a pending result", per_state["pending"] * 1e6, "us"),
                Row(f"N={n}: update it to success", per_state["success"] * 1e6, "us"),
                Row(f"N={n}: task detail, all targets", full * 1000, "ms"),
                Row(f"N={n}:   per target", full / n * 1e6, "us"),
                Row(f"N={n}: task detail, targets=false", brief * 1000, "ms"),
            ]
    finally:
        octo.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,5000", help="target counts, comma-separated")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="octo-bench-results-") as tmp:
        rows = measure(Path(tmp) / "data", [int(n) for n in args.sizes.split(",")])
    print_table(rows)
    print(
        f"\nCPU seconds of this process (SQLite, in process); load average {load:.2f} at the "
        f"start, {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
