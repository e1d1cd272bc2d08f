"""Helpers of the benches that run work through the API: a script on targets through the
console, a task's timings from its own timestamps, why targets failed, the health checks
registrations queue, and the CPU a script costs per target by role.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import _repo  # noqa: F401  (the repository on sys.path, first)
import httpx
import psutil
from _fleet import ENVIRONMENT, FINAL_STATES, AgentFleet, pid_of

from tests.serve_process import ServeProcess


def parse_iso(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class TaskRun:
    task_id: str
    state: str
    #: created_at -> finished_at, from the task's own timestamps
    seconds: float
    #: POST sent -> the poll that saw it finished (includes the poll interval)
    observed: float
    failed_targets: list[str]


def wait_for_task(
    client: httpx.Client, task_id: str, timeout: float, poll: float = 0.05
) -> dict[str, Any]:
    """The task as ``GET /api/v1/tasks/{id}`` shows it once it has ended, or as it was when
    ``timeout`` ran out (the caller checks ``state`` against :data:`FINAL_STATES`). Polls
    without the per-target results (``?targets=false``) and reads them once at the end: a
    full read per poll cost the appliance one row per target per poll, so the bench's own
    polling grew its CPU per target with the number of targets (issue 14)."""
    deadline = time.monotonic() + timeout
    while True:
        brief = client.get(f"/api/v1/tasks/{task_id}", params={"targets": "false"}).json()
        if brief.get("state") in FINAL_STATES or time.monotonic() > deadline:
            task: dict[str, Any] = client.get(f"/api/v1/tasks/{task_id}").json()
            return task
        time.sleep(poll)


def run_script(
    client: httpx.Client,
    names: Sequence[str],
    body: str = "echo ok",
    poll: float = 0.05,
    timeout: float = 300.0,
    window: int | None = None,
) -> TaskRun:
    """Run a bash script on the named targets through the console (``window``: at most that
    many at once); wait for the task."""
    sent = time.time()
    # the console takes at most 1,000 target names: more are every target of the environment
    chosen = {"targets": list(names)} if len(names) <= 1000 else {"environment": ENVIRONMENT}
    payload: dict[str, object] = {**chosen, "syntax": "bash", "body": body}
    if window is not None:
        payload["window"] = window
    response = client.post("/api/v1/scripts", json=payload)
    if response.status_code != 202:
        sys.exit(f"POST /scripts failed: {response.status_code} {response.text}")
    task_id = response.json()["task_id"]
    task = wait_for_task(client, task_id, timeout, poll)
    if task.get("state") not in FINAL_STATES:
        sys.exit(f"task {task_id} did not finish within {timeout:g} s: {task.get('state')}")
    observed = time.time() - sent
    failed = [t["target_name"] for t in task["targets"] if t["state"] != "success"]
    seconds = parse_iso(task["finished_at"]) - parse_iso(task["created_at"])
    return TaskRun(task_id, task["state"], seconds, observed, failed)


def failure_lines(client: httpx.Client, task_id: str, targets: int) -> list[str]:
    """The task's warning and error lines of its first ``targets`` failed targets: why."""
    task = client.get(f"/api/v1/tasks/{task_id}").json()
    failed = {t["target_name"] for t in task["targets"] if t["state"] != "success"}
    shown: dict[str, list[str]] = {}
    since = 0
    while True:
        page = client.get(f"/api/v1/tasks/{task_id}/log", params={"since": since}).json()
        for item in page["items"]:
            name = (item.get("target") or {}).get("name")
            loud = item.get("level") in ("warning", "error")
            if name in failed and loud and (name in shown or len(shown) < targets):
                shown.setdefault(name, []).append(f"{name}: {item['message']}")
        if not page["items"] or page["finished"]:
            break
        since = page["next_since"]
    return [line for lines in shown.values() for line in lines]


def wait_health_checks(
    client: httpx.Client, timeout: float, stalled_after: float = 120.0
) -> tuple[float, int]:
    """Wait until no health check is queued or running: every registration queues one for
    its target, which runs once the agent connects (seconds waited, checks that failed). A
    wait in which no check ended for ``stalled_after`` seconds gives up, saying how many are
    left, so that one task that never ends does not hold the bench's later sections."""
    started = last_change = time.monotonic()
    last_busy = -1
    while True:
        busy = sum(
            client.get("/api/v1/tasks", params={"kind": "health-check", "state": state}).json()[
                "total"
            ]
            for state in ("queued", "executing")
        )
        now = time.monotonic()
        if busy != last_busy:
            last_busy, last_change = busy, now
        if not busy or now - started > timeout:
            break
        if now - last_change > stalled_after:
            print(f"  {busy} health check(s) made no progress for {stalled_after:.0f} s: going on")
            break
        time.sleep(1.0)
    failed = client.get("/api/v1/tasks", params={"kind": "health-check", "state": "failed"})
    return time.monotonic() - started, int(failed.json()["total"])


@contextlib.contextmanager
def api_client(server: ServeProcess, key: str) -> Iterator[httpx.Client]:
    with server.http2_client(headers={"X-Api-Key": key}, timeout=60) as client:
        yield client


def failed_suffix(run: TaskRun) -> str:
    return f" ({len(run.failed_targets)} failed)" if run.failed_targets else ""


def appliance_cpu(server: ServeProcess) -> float:
    times = psutil.Process(pid_of(server)).cpu_times()
    return float(times.user + times.system)


#: seconds of the appliance's idle CPU measured before each script
IDLE_SAMPLE_S = 3.0


def scripted(
    server: ServeProcess,
    client: httpx.Client,
    names: Sequence[str],
    what: str,
    fleet: AgentFleet | None = None,
    window: int | None = None,
) -> TaskRun:
    """A script on every target (``window``: at most that many at once); prints its time,
    the CPU per target by role (appliance; with ``fleet``: agent processes, and their runners
    and scripts), and why targets failed if some did (the run goes on: later figures still
    count)."""
    # the appliance's idle rate (keepalives of every connection) just before: its share of
    # the script's CPU grows with the script's duration, not with the script's work
    idle_start = appliance_cpu(server)
    time.sleep(IDLE_SAMPLE_S)
    before = appliance_cpu(server)
    idle_rate = (before - idle_start) / IDLE_SAMPLE_S
    agents_before = fleet.cpu_seconds() if fleet else 0.0
    tree_before = fleet.tree_cpu_seconds() if fleet else 0.0
    run = run_script(client, names, poll=0.25, timeout=900, window=window)
    cpu = appliance_cpu(server) - before
    beyond_idle = max(cpu - idle_rate * run.observed, 0.0)
    failed = f", {len(run.failed_targets)} failed" if run.failed_targets else ""
    roles = ""
    if fleet:
        agents = fleet.cpu_seconds() - agents_before
        runners = fleet.tree_cpu_seconds() - tree_before - agents
        roles = (
            f"; agent processes {agents / len(names) * 1000:.1f} ms, fork servers, runners "
            f"and scripts {runners / len(names) * 1000:.1f} ms per target (load "
            f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())})"
        )
    print(
        f"  {what} on {len(names)}: {run.seconds:.1f} s created -> done ({run.state}{failed}); "
        f"appliance CPU {cpu:.1f} s, {cpu / len(names) * 1000:.1f} ms per target "
        f"({beyond_idle / len(names) * 1000:.1f} ms beyond its idle rate of "
        f"{idle_rate * 100:.1f}% of a core){roles}",
        flush=True,
    )
    if run.failed_targets:
        for line in failure_lines(client, run.task_id, 3):
            print(f"    {line}", flush=True)
    return run
