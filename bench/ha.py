"""Calls across nodes (issue 13, item 2): what relaying through PostgreSQL costs.

Two ``serve`` nodes on one throwaway PostgreSQL database share a certificate and master key.
Node A runs every task (node B runs one task at a time and is kept busy by a script waiting
for an agent that never connects). 100 polling agents (4 agent processes x 25 identities) are
connected in two layouts, one after the other in the same run:

- **1 node**: all 100 agents connected to node A: every call is local;
- **2 nodes**: 50 agents on node A, 50 on node B: half the calls cross to node B.

For each layout: a script fan-out (``echo ok`` on the 100 agents through the script console)
and a two-step deployment (two ``run-script`` steps on the 100 agents), each timed by the
task's own ``created_at`` -> ``finished_at`` (median of several runs). Beside them, per call:
a one-agent ``true`` script on an agent of node A and on one of node B (the difference is the
added latency of one relayed call, ``runner.run`` with its few events); per streamed event: a
one-agent script printing 2,000 lines, on node A and on node B (the difference over 2,000);
the fan-out to node A's 50 agents and to node B's 50, alternated (the same N under the same
moment's load: the two layouts are measured minutes apart); and the CPU seconds each layout's
fan-outs and deployments cost the nodes, the agents and PostgreSQL.

Goal: the 2-node fan-out and deployment within 10 % of the 1-node ones at N = 100. Figures
from a shared 2-core machine with other work running: the load average is printed beside
each; compare ratios.

Usage: ``.venv/bin/python bench/ha.py [--quick]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from _fleet import (
    ENVIRONMENT,
    ROLE,
    AgentFleet,
    AgentSpec,
    pid_of,
    register_agents,
)
from _tasks import (
    parse_iso,
    run_script,
    wait_for_task,
)

from octo_appliance.agent.home import Home
from tests.ha.cluster import throwaway_database
from tests.ha.relay_cluster import shared_certificate
from tests.serve_process import ServeProcess

N = 100
PER_PROCESS = 25
GOAL_RATIO = 1.10
EVENTS = 2000


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def start_node(root: Path, name: str, database: str, tls: tuple[Path, Path], **env: str) -> Any:
    key_env = {"OCTO_MASTER_KEY_FILE": env.pop("key_file")} if "key_file" in env else {}
    return ServeProcess(
        root / f"{name}-data",
        env={
            "OCTO_DATABASE": database,
            "OCTO_NODE_NAME": name,
            "OCTO_TLS_CERT": str(tls[0]),
            "OCTO_TLS_KEY": str(tls[1]),
            "OCTO_ADMIN_PASSWORD": "bench-admin-password",
            "OCTO_PICKUP_TIMEOUT_SECONDS": "900",
            **key_env,
            **env,
        },
    ).start()


def create_key(node: ServeProcess, database: str) -> str:
    args = [sys.executable, "-m", "octo_appliance", "api-key", "create"]
    args += ["--data-dir", str(node.data_dir), "--user", "admin", "--name", "bench"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
    env["OCTO_DATABASE"] = database
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout
    return out.strip().splitlines()[-1].strip()


def rows_of(database: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one read of the cluster's database."""
    with psycopg.connect(database, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def busy_nodes(database: str) -> dict[str, int]:
    rows = rows_of(
        database,
        'SELECT "node", count(*) FROM "server_task" WHERE "state" = \'executing\' GROUP BY "node"',
    )
    queued = rows_of(database, 'SELECT count(*) FROM "server_task" WHERE "state" = \'queued\'')
    found = {str(node): int(count) for node, count in rows}
    found["queued"] = int(queued[0][0]) if queued else 0
    return found


def settle(database: str, ghosts: int, timeout: float = 600) -> None:
    """Until only the ghost scripts run (health checks of new agents are done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = busy_nodes(database)
        if found["queued"] == 0 and sum(v for k, v in found.items() if k != "queued") == ghosts:
            return
        time.sleep(0.5)
    sys.exit(f"the nodes did not settle: {busy_nodes(database)}")


def keep_b_busy(tmp: Path, a: ServeProcess, api_b: httpx.Client, key: str, database: str) -> int:
    """Node B runs one task at a time: hold it with scripts for an agent that never
    connects (its health check, queued at registration, waits too); how many such tasks."""
    register_agents(a, key, tmp / "ghost", [AgentSpec("ghost", "polling")])
    moved = api_b.put("/api/v1/targets/ghost", json={"roles": ["ghost"]})  # not deployed to
    if moved.status_code != 200:
        sys.exit(f"PUT /targets/ghost failed: {moved.status_code} {moved.text}")
    ghosts = 1
    while busy_nodes(database).get("nodeB", 0) == 0:
        body = {"targets": ["ghost"], "syntax": "bash", "body": "true"}
        response = api_b.post("/api/v1/scripts", json=body)
        if response.status_code != 202:
            sys.exit(f"POST /scripts failed: {response.status_code} {response.text}")
        ghosts += 1
        time.sleep(2)
    settle(database, ghosts)
    return ghosts


def point_agents(homes: Sequence[Home], addresses: Sequence[str]) -> None:
    for index, home in enumerate(homes):
        config = home.require_registered()
        config.polling_address = addresses[index % len(addresses)]
        home.save_config(config)


def connected_per_node(database: str) -> dict[str, int]:
    rows = rows_of(
        database,
        'SELECT n."label", count(*) FROM "relay_agent" a JOIN "relay_node" n '
        'ON n."id" = a."node_id" GROUP BY n."label"',
    )
    return {str(label).split()[0]: int(count) for label, count in rows}


def wait_layout(database: str, expected: dict[str, int], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if connected_per_node(database) == expected:
            return
        time.sleep(0.5)
    sys.exit(f"agents not connected as {expected}: {connected_per_node(database)}")


def deploy_seconds(client: httpx.Client, release_project: str) -> float:
    release = client.post(f"/api/v1/projects/{release_project}/releases", json={}).json()
    created = client.post(
        "/api/v1/deployments", json={"release": release["id"], "environment": ENVIRONMENT}
    )
    if created.status_code != 201:
        sys.exit(f"deploying failed: {created.status_code} {created.text}")
    task = wait_for_task(client, created.json()["task_id"], 600)
    if task.get("state") != "success":
        sys.exit(f"the deployment ended {task.get('state')}: {task.get('error')}")
    return parse_iso(task["finished_at"]) - parse_iso(task["created_at"])


def project(client: httpx.Client) -> str:
    phases = [{"name": ENVIRONMENT, "environments": [ENVIRONMENT]}]
    client.post("/api/v1/lifecycles", json={"name": "Bench", "phases": phases})
    made = client.post("/api/v1/projects", json={"name": "HaBench", "lifecycle": "Bench"})
    steps = [
        {
            "name": name,
            "type": "run-script",
            "roles": [ROLE],
            "properties": {"syntax": "bash", "body": f"echo {name} on #{{Octo.Machine.Name}}"},
        }
        for name in ("One", "Two")
    ]
    client.put(f"/api/v1/projects/{made.json()['id']}/process", json={"steps": steps})
    return str(made.json()["id"])


def timed(client: httpx.Client, names: Sequence[str], body: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        run = run_script(client, names, body)
        if run.state != "success":
            sys.exit(f"a bench script ended {run.state} on {run.failed_targets}")
        out.append(run.seconds)
    return out


def process_cpu(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    return 0.0


class CpuMeter:
    """CPU seconds of the two nodes, the agent processes (not their runners, the same in both
    layouts) and the PostgreSQL backends serving the cluster's database: what a layout costs,
    which a loaded shared machine does not blur as it blurs wall-clock times."""

    def __init__(self, database: str, a: ServeProcess, b: ServeProcess, fleet: AgentFleet):
        self.database, self.nodes, self.fleet = database, {"A": a, "B": b}, fleet
        self.start = self.read()

    def read(self) -> dict[str, Any]:
        backends = rows_of(
            self.database,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()",
        )
        return {
            **{name: process_cpu(pid_of(node)) for name, node in self.nodes.items()},
            "agents": self.fleet.cpu_seconds(),
            "postgres": {int(row[0]): process_cpu(int(row[0])) for row in backends},
        }

    def used(self) -> dict[str, float]:
        end, start = self.read(), self.start
        spent = {key: end[key] - start[key] for key in ("A", "B", "agents")}
        before = start["postgres"]
        spent["postgres"] = sum(t - before.get(pid, 0.0) for pid, t in end["postgres"].items())
        return spent


def fork_servers(fleet: AgentFleet) -> int:
    """Runner fork servers the agent processes keep (their children that outlive a task):
    an agent starts them only while the machine is at least half idle, and a runner forked
    from one costs ~10 ms of CPU where one started afresh costs an interpreter's start, so
    the layouts compare fairly only with as many up in each."""
    count = 0
    for agent in fleet.processes:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(agent.pid).children():
                if time.time() - child.create_time() > 5 and "octo-runner" in " ".join(
                    child.cmdline()
                ):
                    count += 1
    return count


def wait_for_forks(fleet: AgentFleet, timeout: float = 180.0) -> None:
    """Wait until every agent has its runner fork server up (started after 2 s without a
    task): a layout measured before they are up pays an interpreter start per runner, the
    other does not, and the ratio would compare fork servers, not nodes."""
    deadline = time.monotonic() + timeout
    while (up := fork_servers(fleet)) < N and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"  runner fork servers up: {up} of {N}; {load()}", flush=True)


def measure(
    client: httpx.Client, project_id: str, names: list[str], runs: int, meter: CpuMeter
) -> dict[str, Any]:
    forks = fork_servers(meter.fleet)
    fan = timed(client, names, "echo ok", runs)
    deploys = [deploy_seconds(client, project_id) for _ in range(max(2, runs // 2))]
    return {
        "fanout": statistics.median(fan),
        "deploy": statistics.median(deploys),
        "fanout_min": min(fan),
        "deploy_min": min(deploys),
        "load": load(),
        "cpu": meter.used(),
        "forks": f"{forks} -> {fork_servers(meter.fleet)}",
    }


@contextlib.contextmanager
def cluster(tmp: Path) -> Iterator[tuple[str, ServeProcess, ServeProcess]]:
    tls = shared_certificate(tmp / "tls")
    nodes: list[ServeProcess] = []
    with throwaway_database() as database:
        try:
            a = start_node(tmp, "nodeA", database, tls, OCTO_TASK_CAP="10")
            nodes.append(a)
            assert a.key_file is not None
            key_file = str(a.key_file)
            b = start_node(tmp, "nodeB", database, tls, OCTO_TASK_CAP="1", key_file=key_file)
            nodes.append(b)
            yield database, a, b
        finally:
            for node in nodes:
                node.stop()
                node.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    runs = 3 if args.quick else 6
    print(f"bench/ha.py: {N} polling agents, 2 nodes on PostgreSQL; {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="octo-ha-bench-") as tmpdir:
        tmp = Path(tmpdir)
        with cluster(tmp) as (database, a, b):
            key = create_key(a, database)
            specs = [AgentSpec(f"ha-{i:03d}", "polling") for i in range(N)]
            homes = register_agents(a, key, tmp / "agents", specs)
            headers = {"X-Api-Key": key}
            with (
                a.http2_client(headers=headers, timeout=60) as api_a,
                b.http2_client(headers=headers, timeout=60) as api_b,
            ):
                address_a = f"127.0.0.1:{a.banner.polling_port}"
                address_b = f"127.0.0.1:{b.banner.polling_port}"
                names = [spec.name for spec in specs]
                project_id = project(api_a)
                ghosts = 0
                results: dict[str, dict[str, Any]] = {}
                for layout, addresses, expected in (
                    ("1 node", [address_a], {"nodeA": N}),
                    ("2 nodes", [address_a, address_b], {"nodeA": N // 2, "nodeB": N // 2}),
                ):
                    point_agents(homes, addresses)
                    fleet = AgentFleet().start(homes, PER_PROCESS)
                    try:
                        wait_layout(database, expected)
                        settle(database, ghosts)
                        if not ghosts:
                            ghosts = keep_b_busy(tmp, a, api_b, key, database)
                        fleet.settle()
                        print(f"  {layout}: agents connected {expected}; {load()}", flush=True)
                        timed(api_a, names, "echo warm", 1)
                        wait_for_forks(fleet)
                        meter = CpuMeter(database, a, b, fleet)
                        results[layout] = measure(api_a, project_id, names, runs, meter)
                        if layout == "2 nodes":
                            local, remote = names[0], names[1]  # even -> A, odd -> B
                            per_call = {
                                node: statistics.median(timed(api_a, [name], "true", runs * 2))
                                for node, name in (("A", local), ("B", remote))
                            }
                            lines = f"for i in $(seq {EVENTS}); do echo line $i; done"
                            per_event = {
                                node: statistics.median(timed(api_a, [name], lines, runs))
                                for node, name in (("A", local), ("B", remote))
                            }
                            results["calls"] = {
                                "call": per_call,
                                "event": per_event,
                                "halves": halves(api_a, names, runs),
                                "load": load(),
                            }
                    finally:
                        fleet.close()
                report(results)


def halves(client: httpx.Client, names: list[str], runs: int) -> dict[str, float]:
    """The 50 agents of node A and the 50 of node B, fanned out to in turn (local, relayed,
    local, ...): the same N and the same moment's load for both, which the two layouts,
    measured minutes apart on a shared machine, do not get."""
    spent: dict[str, list[float]] = {"local": [], "relayed": []}
    for _ in range(runs):
        for half, group in (("local", names[0::2]), ("relayed", names[1::2])):
            spent[half] += timed(client, group, "echo ok", 1)
    return {half: statistics.median(times) for half, times in spent.items()}


def report(results: dict[str, dict[str, Any]]) -> None:
    one, two, calls = results["1 node"], results["2 nodes"], results["calls"]
    print()
    print(f"{'figure':<44}{'1 node':>10}{'2 nodes':>10}{'ratio':>8}  goal    load (1/5 min)")
    for key, label in (
        ("fanout", "script fan-out, N=100, median (s)"),
        ("fanout_min", "script fan-out, N=100, best (s)"),
        ("deploy", "2-step deployment, N=100, median (s)"),
        ("deploy_min", "2-step deployment, N=100, best (s)"),
    ):
        ratio = two[key] / one[key]
        verdict = "ok" if ratio < GOAL_RATIO else "MISSED"
        print(
            f"{label:<44}{one[key]:>10.2f}{two[key]:>10.2f}{ratio:>8.2f}  <{GOAL_RATIO:.2f} "
            f"{verdict:<6} {one['load']} | {two['load']}"
        )
    print(f"agents' runner fork servers up (before -> after): {one['forks']} / {two['forks']}")
    cpu_one, cpu_two = one["cpu"], two["cpu"]
    print("CPU seconds over those fan-outs and deployments (1 node / 2 nodes):")
    for key in ("A", "B", "agents", "postgres"):
        label = {"A": "node A", "B": "node B"}.get(key, key)
        print(f"  {label:<10}{cpu_one[key]:>8.2f}{cpu_two[key]:>8.2f}")
    total_one, total_two = sum(cpu_one.values()), sum(cpu_two.values())
    print(f"  {'total':<10}{total_one:>8.2f}{total_two:>8.2f}  ratio {total_two / total_one:.2f}")
    local, relayed = calls["halves"]["local"], calls["halves"]["relayed"]
    print(
        f"fan-out to node A's 50 / node B's 50, alternated (median): {local:.2f} s / "
        f"{relayed:.2f} s, ratio {relayed / local:.2f}"
    )
    call, event = calls["call"], calls["event"]
    added_call = (call["B"] - call["A"]) * 1000
    added_event = (event["B"] - event["A"]) / EVENTS * 1e6
    print(
        f"one-agent 'true' task: local {call['A'] * 1000:.0f} ms, relayed {call['B'] * 1000:.0f} "
        f"ms -> added per call {added_call:.0f} ms ({calls['load']})"
    )
    print(
        f"{EVENTS} log lines on one agent: local {event['A']:.2f} s, relayed {event['B']:.2f} s "
        f"-> added per streamed event {added_event:.0f} us"
    )
    print("(a shared, loaded 2-core machine: compare ratios, not absolute times)")


if __name__ == "__main__":
    main()
