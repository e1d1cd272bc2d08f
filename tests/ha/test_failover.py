"""Work across real nodes: drain, a package uploaded to one node deployed by another, and a
node killed (``kill -9``) in the middle of a deployment to a listening agent.

Every script appends to a record file of its own on the target machine (the target's own
record, not the appliance's): that is how the tests see that no step ran twice.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import signal
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import wait_until
from tests.ha.cluster import Cluster, running_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: claims look every 3 s and heartbeats come every 5 s: three of each, at least
QUIET_SECONDS = 15


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("ha-work"), count=2) as cluster:
        agents = [
            cluster.fleet.register("web-1", "listening"),
            cluster.fleet.register("aux-1", "listening", roles=("aux",)),
        ]
        cluster.fleet.start_agents(agents)
        yield cluster


def other(name: str) -> str:
    return "node-2" if name == "node-1" else "node-1"


def script(cluster: Cluster, via: str, body: str, target: str) -> str:
    """A script console task on one target (an agent runs one script at a time: the long
    task and the short ones get targets of their own)."""
    payload = {"syntax": "bash", "body": body, "targets": [target]}
    return str(cluster.call(via, "POST", "/scripts", 202, json=payload)["task_id"])


def lines(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def test_a_draining_node_finishes_its_task_and_takes_no_new_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    record, go = tmp_path / "record", tmp_path / "go"
    long_body = f'echo long >> "{record}"\nwhile [ ! -e "{go}" ]; do sleep 0.1; done\necho done\n'
    first = script(cluster, "node-1", long_body, "web-1")
    runner = cluster.wait_running("node-1", first)
    wait_until(lambda: lines(record) == ["long"], 60, "the long script to start")
    drained = cluster.call(other(runner), "POST", f"/nodes/{runner}/drain")
    assert drained["draining"] is True
    try:
        # a new task goes to the other node
        second = script(cluster, runner, f'echo second >> "{record}"', "aux-1")
        done = cluster.wait_final(runner, second)
        assert done["state"] == "success" and done["node"] == other(runner), done
        # with the other node drained too, nobody takes a new task; the drained node still
        # serves the API and its running task
        cluster.call(runner, "POST", f"/nodes/{other(runner)}/drain")
        third = script(cluster, runner, f'echo third >> "{record}"', "aux-1")
        time.sleep(QUIET_SECONDS)
        assert cluster.task(runner, third)["state"] == "queued"
        assert cluster.task(runner, first)["state"] == "executing"
        go.touch()
        finished = cluster.wait_final(runner, first)
        assert finished["state"] == "success" and finished["node"] == runner
        time.sleep(QUIET_SECONDS)
        assert cluster.task(runner, third)["state"] == "queued"
        # undrained, it takes the waiting task
        cluster.call(other(runner), "POST", f"/nodes/{runner}/undrain")
        ran = cluster.wait_final(runner, third)
        assert ran["state"] == "success" and ran["node"] == runner
        assert lines(record) == ["long", "second", "third"]
    finally:
        for name in ("node-1", "node-2"):
            cluster.call(other(name), "POST", f"/nodes/{name}/undrain")


def package_zip(record: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.txt", "from the shared feed\n")
        archive.writestr("Deploy.sh", f'echo "deployed $(cat payload.txt)" >> "{record}"\n')
    return buffer.getvalue()


def test_a_package_uploaded_to_one_node_deploys_from_another(
    cluster: Cluster, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    package = f"ha-app-{secrets.token_hex(3)}"
    upload = cluster.api("node-1").post(
        "/api/v1/packages",
        files={"file": (f"{package}.1.0.0.zip", package_zip(record), "application/zip")},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    cluster.call("node-2", "POST", "/nodes/node-1/drain")  # node-2 must run it
    try:
        project = cluster.call("node-2", "POST", "/projects", 201, json={"name": package})
        step = {
            "name": "Install",
            "type": "deploy-package",
            "roles": ["web"],
            "properties": {"package": package},
        }
        cluster.call("node-2", "PUT", f"/projects/{project['id']}/process", json={"steps": [step]})
        release = cluster.call(
            "node-2", "POST", f"/projects/{project['id']}/releases", 201, json={}
        )
        body = {"release": release["id"], "environment": "Dev"}
        deployment = cluster.call("node-2", "POST", "/deployments", 201, json=body)
        task = cluster.wait_final("node-2", deployment["task_id"], timeout=120)
        assert task["state"] == "success", task
        assert task["node"] == "node-2"
        assert lines(record) == ["deployed from the shared feed"]
    finally:
        cluster.call("node-2", "POST", "/nodes/node-1/undrain")


# -- a node dies --------------------------------------------------------------------------------


def two_step_project(cluster: Cluster, via: str, record: Path, gates: Path) -> dict[str, Any]:
    """Step 1 records itself; step 2 records its start, waits for its task's gate file, and
    records its end. Every line names the task."""
    task = "#{Octo.Task.Id}"
    steps = [
        {
            "name": "First",
            "type": "run-script",
            "roles": ["web"],
            "properties": {"syntax": "bash", "body": f'echo "first {task}" >> "{record}"'},
        },
        {
            "name": "Second",
            "type": "run-script",
            "roles": ["web"],
            "properties": {
                "syntax": "bash",
                "body": (
                    f'echo "second-start {task}" >> "{record}"\n'
                    f'while [ ! -e "{gates}/{task}" ]; do sleep 0.1; done\n'
                    f'echo "second-end {task}" >> "{record}"\n'
                ),
            },
        },
    ]
    project = cluster.call(
        via, "POST", "/projects", 201, json={"name": f"p-{secrets.token_hex(3)}"}
    )
    cluster.call(via, "PUT", f"/projects/{project['id']}/process", json={"steps": steps})
    return dict(cluster.call(via, "POST", f"/projects/{project['id']}/releases", 201, json={}))


def test_a_killed_node_s_deployment_fails_naming_it_and_redeploys_through_another(
    tmp_path: Path,
) -> None:
    with gated_cluster(tmp_path, two_step_project) as (cluster, record, gates, release):
        body = {"release": release["id"], "environment": "Dev"}
        first = cluster.call("node-1", "POST", "/deployments", 201, json=body)
        victim = cluster.wait_running("node-1", first["task_id"])
        survivor = other(victim)
        wait_until(
            lambda: f"second-start {first['task_id']}" in lines(record),
            60,
            "the second step to start",
        )
        cluster.kill(victim)  # kill -9, in the middle of step 2
        failed = cluster.wait_final(survivor, first["task_id"], timeout=60)
        assert failed["state"] == "failed"
        assert f"appliance node '{victim}'" in failed["error"]
        assert "declared dead" in failed["error"]
        log = [
            line["message"]
            for line in cluster.call(survivor, "GET", f"/tasks/{first['task_id']}/log")["items"]
        ]
        assert any(f"appliance node '{victim}'" in line for line in log)
        rows = cluster.node_rows(survivor)
        assert rows[victim]["state"] == "dead" and victim in rows[victim]["reason"]
        dead_deployment = cluster.call(survivor, "GET", f"/deployments/{first['id']}")
        assert dead_deployment["state"] == "failed"
        # redeployed through the surviving node
        again = cluster.call(survivor, "POST", "/deployments", 201, json=body)
        assert cluster.wait_running(survivor, again["task_id"]) == survivor
        wait_until(
            lambda: f"second-start {again['task_id']}" in lines(record),
            60,
            "the redeployment's second step to start",
        )
        (gates / again["task_id"]).touch()
        done = cluster.wait_final(survivor, again["task_id"], timeout=90)
        assert done["state"] == "success", done
    # the target's own record: each step ran once per deployment, never twice
    old, new = first["task_id"], again["task_id"]
    assert sorted(lines(record)) == sorted(
        [
            f"first {old}",
            f"second-start {old}",
            f"first {new}",
            f"second-start {new}",
            f"second-end {new}",
        ]
    )


@contextlib.contextmanager
def gated_cluster(
    tmp_path: Path, project: Callable[[Cluster, str, Path, Path], dict[str, Any]]
) -> Iterator[tuple[Cluster, Path, Path, dict[str, Any]]]:
    """Two nodes, one listening agent and a release of ``project`` made through node-1 (its
    steps write to ``record`` and wait on a file in ``gates``)."""
    record, gates = tmp_path / "record", tmp_path / "gates"
    gates.mkdir()
    with running_cluster(tmp_path / "cluster", count=2) as cluster:
        agent = cluster.fleet.register("web-1", "listening")
        cluster.fleet.start_agents([agent])
        yield cluster, record, gates, project(cluster, "node-1", record, gates)


def three_step_project(cluster: Cluster, via: str, record: Path, gates: Path) -> dict[str, Any]:
    """The two steps of :func:`two_step_project` and a third that records itself."""
    release = two_step_project(cluster, via, record, gates)
    project = release["project_id"]
    process = cluster.call(via, "GET", f"/projects/{project}/process")
    third = {
        "name": "Third",
        "type": "run-script",
        "roles": ["web"],
        "properties": {"syntax": "bash", "body": f'echo "third #{{Octo.Task.Id}}" >> "{record}"'},
    }
    steps = [*process["steps"], third]
    cluster.call(via, "PUT", f"/projects/{project}/process", json={"steps": steps})
    return dict(cluster.call(via, "POST", f"/projects/{project}/releases", 201, json={}))


def test_a_node_declared_dead_while_only_paused_stops_its_task_when_it_wakes(
    tmp_path: Path,
) -> None:
    """SIGSTOP stands for a node that is slow, not dead: the others declare it dead and fail
    its task; when it runs again it finds out at its next heartbeat, stops the task before
    any later step, leaves the task's failure as it is, and joins again under a new start."""
    with gated_cluster(tmp_path, three_step_project) as (cluster, record, gates, release):
        body = {"release": release["id"], "environment": "Dev"}
        deployment = cluster.call("node-1", "POST", "/deployments", 201, json=body)
        task_id = deployment["task_id"]
        victim = cluster.wait_running("node-1", task_id)
        survivor = other(victim)
        wait_until(lambda: f"second-start {task_id}" in lines(record), 60, "step 2 to start")
        before = cluster.node_rows(survivor)[victim]["started_at"]
        process = cluster.nodes[victim].process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        try:
            failed = cluster.wait_final(survivor, task_id, timeout=60)
        finally:
            process.send_signal(signal.SIGCONT)
        assert failed["state"] == "failed" and f"appliance node '{victim}'" in failed["error"]
        assert cluster.node_rows(survivor)[victim]["state"] == "dead"
        rejoined = wait_until(
            lambda: (
                (row := cluster.node_rows(survivor)[victim])["state"] == "alive"
                and row["started_at"] != before
                and row
            ),
            60,
            f"{victim} to find itself declared dead and join again",
        )
        assert rejoined["running"] == 0
        assert "was declared dead by another node" in cluster.nodes[victim].output()
        (gates / task_id).touch()  # step 2 could end now; step 3 must never start
        time.sleep(QUIET_SECONDS)
        assert f"third {task_id}" not in lines(record)
        after = cluster.task(survivor, task_id)
        assert after["state"] == "failed" and after["error"] == failed["error"]
        # the node works again: a new deployment runs through
        again = cluster.call(survivor, "POST", "/deployments", 201, json=body)
        wait_until(lambda: f"second-start {again['task_id']}" in lines(record), 60, "step 2")
        (gates / again["task_id"]).touch()
        assert cluster.wait_final(survivor, again["task_id"], timeout=90)["state"] == "success"
    assert lines(record).count(f"first {task_id}") == 1
    assert lines(record).count(f"second-start {task_id}") == 1
    assert f"third {again['task_id']}" in lines(record)
