"""Nodes on one PostgreSQL: the node list, drain and undrain through the CLI, the checks at
start (a name in use, another master key, a missing plugin), API keys, cached listings and
interruptions across nodes.

Real ``serve`` processes on a throwaway database (tests/ha/cluster.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.api.response_cache import SHARED_DATABASE_TTL
from octo_appliance.security.permissions import CACHE_SECONDS
from tests.child_process import clean_env
from tests.fleet import wait_until
from tests.ha.cluster import Cluster, running_cluster
from tests.serve_process import ServeFailed, ServeProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

GREETING = Path(__file__).parents[1] / "plugin_fixtures" / "octo-greeting" / "octo_greeting"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("ha-nodes"), count=2) as cluster:
        yield cluster


def cli(
    cluster: Cluster, node: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    server = cluster.nodes[node]
    done = subprocess.run(
        [sys.executable, "-m", "octo_appliance", *args],
        capture_output=True,
        text=True,
        env=clean_env(
            OCTO_SERVER=server.url.rstrip("/"),
            OCTO_SERVER_THUMBPRINT=server.banner.thumbprint,
            OCTO_API_KEY=cluster.fleet.api_key,
        ),
        timeout=60,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def cli_json(cluster: Cluster, node: str, *args: str) -> Any:
    return json.loads(cli(cluster, node, *args, "--json").stdout)


def test_every_node_lists_both_alive_with_their_addresses(cluster: Cluster) -> None:
    for via in ("node-1", "node-2"):
        listed = {n["name"]: n for n in cli_json(cluster, via, "node", "list")["items"]}
        assert set(listed) == {"node-1", "node-2"}
        for name, node in listed.items():
            server = cluster.nodes[name]
            assert node["state"] == "alive" and not node["stale"]
            assert node["address"] == f"127.0.0.1:{server.port}"
            assert node["polling_address"] == f"127.0.0.1:{server.banner.polling_port}"
            assert node["this_node"] == (name == via)
            assert node["draining"] is False
            assert node["missing_plugins"] == []
        assert listed["node-1"]["key_id"] == listed["node-2"]["key_id"] != ""
    text = cli(cluster, "node-1", "node", "list").stdout
    assert "node-1" in text and "node-2" in text and "answered this request" in text


def test_drain_and_undrain_through_the_cli(cluster: Cluster) -> None:
    drained = cli_json(cluster, "node-1", "node", "drain", "node-2")
    assert drained["name"] == "node-2" and drained["draining"] is True
    assert cluster.node_rows("node-2")["node-2"]["draining"] is True
    said = cli(cluster, "node-2", "node", "undrain", "node-2").stdout
    assert "node-2 takes tasks again" in said
    assert cluster.node_rows("node-1")["node-2"]["draining"] is False
    missing = cli(cluster, "node-1", "node", "drain", "node-9", check=False)
    assert missing.returncode == 1
    assert "no appliance node named 'node-9'" in missing.stderr
    assert "known nodes: node-1, node-2" in missing.stderr


def test_a_second_live_node_with_the_same_name_is_refused(cluster: Cluster) -> None:
    twin = ServeProcess(cluster.root / "twin", env=cluster.settings("node-2"))
    with pytest.raises(ServeFailed) as refused:
        twin.start()
    assert "a live appliance node named 'node-2' is already registered" in str(refused.value)
    assert "node_name" in str(refused.value)
    assert cluster.node_rows("node-1")["node-2"]["state"] == "alive"


def test_a_node_with_another_master_key_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    env = {**cluster.settings("node-x"), "OCTO_MASTER_KEY_FILE": str(tmp_path / "other.key")}
    stranger = ServeProcess(cluster.root / "stranger", env=env)
    with pytest.raises(ServeFailed) as refused:
        stranger.start()
    message = str(refused.value)
    assert "this node's master key" in message and "differs from the key of live node" in message
    assert "node-x" not in cluster.node_rows("node-1")


def test_a_node_missing_a_plugin_another_live_node_has_says_so(cluster: Cluster) -> None:
    # node-3 carries a plugin in its data dir's plugins folder; node-4 does not
    plugins = cluster.root / "node-3" / "plugins"
    plugins.mkdir(parents=True)
    shutil.copytree(GREETING, plugins / "octo_greeting")
    cluster.start_node("node-3")
    lacking = cluster.start_node("node-4")
    try:
        rows = cluster.node_rows("node-1")
        assert any("greeting" in p for p in rows["node-3"]["plugins"])
        missing = rows["node-4"]["missing_plugins"]
        assert len(missing) == 1 and "greeting" in missing[0], missing
        assert rows["node-3"]["missing_plugins"] == []
        assert rows["node-1"]["missing_plugins"] == missing  # started before node-3: listed
        log = lacking.output()
        assert "node node-4 lacks plugin(s) another live node loaded: " + missing[0] in log
    finally:
        cluster.forget("node-3")
        cluster.forget("node-4")
    stopped = cluster.node_rows("node-1")["node-4"]
    assert stopped["state"] == "stopped" and "SIGTERM" in stopped["reason"]
    assert cluster.node_rows("node-1")["node-1"]["missing_plugins"] == []


def test_an_api_key_made_on_one_node_works_on_the_other_and_its_revocation_too(
    cluster: Cluster,
) -> None:
    made = cluster.call("node-1", "POST", "/api-keys", 201, json={"name": "cross-node"})
    key = made["key"]
    other = cluster.nodes["node-2"].http2_client(headers={"X-Api-Key": key}, timeout=30)
    with other:
        assert other.get("/api/v1/environments").status_code == 200  # at once, and cached
        cluster.call("node-1", "DELETE", f"/api-keys/{made['id']}", 200)
        status = wait_until(
            lambda: (code := other.get("/api/v1/environments").status_code) != 200 and code,
            CACHE_SECONDS + 5,
            "node-2 to refuse the revoked key",
        )
        assert status == 401


def test_a_cached_listing_on_one_node_sees_a_write_through_the_other(cluster: Cluster) -> None:
    """The response cache empties on its own node's writes; on PostgreSQL its answers also
    expire after SHARED_DATABASE_TTL, so another node's write shows within that bound."""
    listed = cluster.call("node-2", "GET", "/environments")  # now cached on node-2
    name = f"env-{len(listed['items'])}-cross"
    cluster.call("node-1", "POST", "/environments", 201, json={"name": name})
    wait_until(
        lambda: (
            name in [e["name"] for e in cluster.call("node-2", "GET", "/environments")["items"]]
        ),
        SHARED_DATABASE_TTL + 5,
        "node-2 to list the environment node-1 created",
    )


def test_an_interruption_answered_on_the_other_node_resumes_the_deployment(
    cluster: Cluster,
) -> None:
    """The engine waits for an answer by reading the interruption's row (not an in-process
    event), so an answer submitted through any node resumes the task on the node running it."""
    project = cluster.call("node-1", "POST", "/projects", 201, json={"name": "ha-approval"})
    step = {
        "name": "Approve",
        "type": "manual-intervention",
        "properties": {"instructions": "Check it"},
    }
    cluster.call("node-1", "PUT", f"/projects/{project['id']}/process", json={"steps": [step]})
    release = cluster.call("node-1", "POST", f"/projects/{project['id']}/releases", 201, json={})
    body = {"release": release["id"], "environment": "Dev"}
    deployment = cluster.call("node-1", "POST", "/deployments", 201, json=body)
    running = cluster.wait_running("node-1", deployment["task_id"])
    elsewhere = "node-2" if running == "node-1" else "node-1"
    pending = wait_until(
        lambda: [
            item
            for item in cluster.call(elsewhere, "GET", "/interruptions?pending=true")["items"]
            if item["task_id"] == deployment["task_id"]
        ],
        60,
        "the interruption to be pending",
    )
    answer = {"result": "approve", "notes": "from the other node"}
    cluster.call(elsewhere, "POST", f"/interruptions/{pending[0]['id']}/submit", json=answer)
    task = cluster.wait_final(elsewhere, deployment["task_id"], timeout=60)
    assert task["state"] == "success", task
    assert task["node"] == running
