"""Calls across nodes (issue 13, item 2 and the agent side of item 4) on real processes.

Three ``serve`` nodes on one throwaway PostgreSQL database, polling agents connected to node 3,
a listening agent, and a polling agent given two node addresses. Nodes 1 and 3 run one task
at a time and are kept busy by a script waiting for an agent that never connects, so every
task created afterwards (through node 1) is run by node 2: each call it makes to an agent on
node 3 is relayed through PostgreSQL. The tests share the cluster and run in file order; the
last one kills node 3.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fleet import FleetAgent, wait_until
from tests.ha.relay_cluster import Cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(ha_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    env = {"OCTO_TASK_CAP": "1", "OCTO_PICKUP_TIMEOUT_SECONDS": "900"}
    with Cluster(root, database=ha_database, serve_env=env) as cluster:
        cluster.start_node("node3")
        ghost = cluster.register_polling("ghost", "node1", roles=("ghost",))
        assert ghost.process is None  # never started: scripts for it wait, holding their node
        for _ in range(2):  # (its health check may hold a node already)
            if executing_nodes(cluster) != {"node1", "node3"}:
                cluster.run_script("true", roles=["ghost"])
                wait_until(lambda: not queued(cluster), 60, "a node to take the script")
        assert executing_nodes(cluster) == {"node1", "node3"}
        cluster.start_node("node2", OCTO_TASK_CAP="4")
        polling = [cluster.register_polling(f"poll-{n}", "node3") for n in (1, 2)]
        mover = cluster.register_polling("mover", "node3", "node1", roles=("mover",))
        listening = cluster.register("listen-1", "listening")
        cluster.start_agents([*polling, mover], together=True)
        cluster.start_agents([listening])
        cluster.wait_connected_to([*polling, mover], "node3")
        yield cluster


def executing_nodes(cluster: Cluster) -> set[str]:
    with psycopg.connect(cluster.database, autocommit=True) as conn:
        rows = conn.execute(
            'SELECT "node" FROM "server_task" WHERE "state" = \'executing\''
        ).fetchall()
    return {str(row[0]) for row in rows}


def queued(cluster: Cluster) -> bool:
    with psycopg.connect(cluster.database, autocommit=True) as conn:
        row = conn.execute(
            'SELECT count(*) FROM "server_task" WHERE "state" = \'queued\''
        ).fetchone()
    return bool(row and row[0])


def agents(cluster: Cluster, *names: str) -> list[FleetAgent]:
    return [cluster.agents[name] for name in names]


def deploy(cluster: Cluster, steps: list[dict[str, Any]], variables: list[Any]) -> str:
    api = cluster.api()
    name = f"p-{secrets.token_hex(4)}"
    if api.get("/api/v1/lifecycles/Main").status_code == 404:
        phases = [{"name": "Dev", "environments": ["Dev"]}]
        cluster.call("POST", "/lifecycles", 201, json={"name": "Main", "phases": phases})
    project = cluster.call("POST", "/projects", 201, json={"name": name, "lifecycle": "Main"})
    cluster.call("PUT", f"/projects/{project['id']}/process", json={"steps": steps})
    cluster.call("PUT", f"/projects/{project['id']}/variables", json={"variables": variables})
    release = cluster.call("POST", f"/projects/{project['id']}/releases", 201, json={})
    body = {"release": release["id"], "environment": "Dev"}
    return str(cluster.call("POST", "/deployments", 201, json=body)["task_id"])


def script(name: str, body: str, roles: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "run-script",
        "roles": roles,
        "properties": {"syntax": "bash", "body": body},
    }


class Stream:
    """``GET /tasks/{id}/log/stream`` of one node, read in a thread: each log line with the
    task's state as the same node reported it right after the line arrived."""

    def __init__(self, cluster: Cluster, node: str, task_id: str) -> None:
        self.cluster, self.node, self.task_id = cluster, node, task_id
        self.lines: list[tuple[str, str]] = []
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with self.cluster.api_of(self.node) as client:
            path = f"/api/v1/tasks/{self.task_id}/log/stream"
            with client.stream("GET", path, timeout=180) as response:
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "log":
                        message = json.loads(line[6:])["message"]
                        state = client.get(f"/api/v1/tasks/{self.task_id}").json()["state"]
                        self.lines.append((message, state))
                    elif line.startswith("data: ") and event == "end":
                        self.ended.set()
                        return


def test_a_deployment_through_node_1_run_by_node_2_reaches_agents_on_node_3(
    cluster: Cluster,
) -> None:
    """Two steps on polling agents connected to node 3 and a listening agent; node 2 runs
    the task; node 1 streams its log live; a sensitive value stays masked."""
    canary = "canary-" + secrets.token_hex(8)
    steps = [
        script("First", 'echo "first on #{Octo.Machine.Name} with #{Password}"', ["web"]),
        script("Second", 'echo "second on #{Octo.Machine.Name}"; sleep 4; echo "done"', ["web"]),
    ]
    task_id = deploy(cluster, steps, [{"name": "Password", "value": canary, "sensitive": True}])
    stream = Stream(cluster, "node1", task_id)
    task = cluster.wait_task(task_id, timeout=180)
    assert task["state"] == "success", task
    assert task["node"] == "node2"
    assert stream.ended.wait(60)
    for agent in ("poll-1", "poll-2", "listen-1"):
        log = cluster.log_of(task_id, agent)
        assert f"first on {agent} with ********" in log
        assert f"second on {agent}" in log
        assert "done" in log
    messages = [message for message, _ in stream.lines]
    assert not any(canary in message for message in messages)
    assert "first on poll-1 with ********" in messages
    # followed through node 1 while node 2 ran it: lines arrived before the task ended
    assert ("second on poll-1", "executing") in stream.lines
    with psycopg.connect(cluster.database, autocommit=True) as conn:
        left = conn.execute('SELECT count(*) FROM "relay_call"').fetchone()
    assert left == (0,)  # relayed calls are transient


def test_a_relayed_call_is_cancelled_on_the_agent(cluster: Cluster, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task_id = cluster.run_script(f"echo $$ > {pid_file}; echo started; sleep 300", roles=["mover"])
    wait_until(lambda: "started" in cluster.log_of(task_id, "mover"), 120, "the script to start")
    assert cluster.task(task_id)["node"] == "node2"
    assert cluster.connected_node(cluster.agents["mover"]) == "node3"
    pid = int(pid_file.read_text().strip())
    cluster.call("POST", f"/tasks/{task_id}/cancel", 200)
    task = cluster.wait_task(task_id, timeout=120)
    assert task["state"] == "canceled", task
    wait_until(lambda: not _alive(pid), 60, "the script on the agent to be stopped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_an_agent_with_two_addresses_moves_when_its_node_is_killed(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A call under way when node 3 dies fails naming it; the agent reconnects to node 1 and
    the next call, from node 2, is relayed to node 1."""
    task_id = cluster.run_script("echo waiting; sleep 300", roles=["mover"])
    wait_until(lambda: "waiting" in cluster.log_of(task_id, "mover"), 120, "the script to start")
    cluster.nodes["node3"].stop(signal.SIGKILL)
    (mover,) = agents(cluster, "mover")
    cluster.wait_connected_to([mover], "node1", timeout=120)
    task = cluster.wait_task(task_id, timeout=120)
    assert task["state"] == "failed", task
    assert "node3" in json.dumps(task)
    again = cluster.wait_task(cluster.run_script("echo moved", roles=["mover"]), timeout=120)
    assert again["state"] == "success", again
    assert again["node"] == "node2"
    assert "moved" in cluster.log_of(again["id"], "mover")
