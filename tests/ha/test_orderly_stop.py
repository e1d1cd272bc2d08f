"""An orderly stop (SIGTERM) of a node with ``stop_grace_seconds``: a running task finishes
within the grace, or is failed with the restart message once it is over; the node leaves the
node list as stopped, and the others go on.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest

from octo_appliance.engine.tasks import RESTART_MESSAGE
from tests.fleet import wait_until
from tests.ha.cluster import Cluster, running_cluster
from tests.ha.test_failover import lines, script

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

GRACE = 20


def stop_in_thread(cluster: Cluster, name: str) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    server = cluster.nodes[name]
    thread = threading.Thread(
        target=lambda: codes.append(server.stop(signal.SIGTERM, timeout=GRACE + 40)), daemon=True
    )
    thread.start()
    return thread, codes


def refuses(cluster: Cluster, name: str) -> bool:
    try:
        with cluster.nodes[name].http2_client(timeout=2) as client:
            client.get("/api/v1/health")
    except httpx.HTTPError:
        return True
    return False


def only(cluster: Cluster, name: str) -> None:
    """Let only node ``name`` take tasks."""
    for node in cluster.node_rows("node-1"):
        action = "undrain" if node == name else "drain"
        if node in cluster.nodes:
            cluster.call("node-1", "POST", f"/nodes/{node}/{action}")


def test_sigterm_lets_a_running_task_finish_within_the_grace_or_fails_it_after(
    tmp_path: Path,
) -> None:
    record, go = tmp_path / "record", tmp_path / "go"
    body = (
        f'echo start >> "{record}"\n'
        f'while [ ! -e "{go}" ]; do sleep 0.1; done\n'
        f'echo end >> "{record}"\n'
    )
    extra = {"OCTO_STOP_GRACE_SECONDS": str(GRACE)}
    with running_cluster(tmp_path / "cluster", count=3, **extra) as cluster:
        agent = cluster.fleet.register("web-1", "listening")
        cluster.fleet.start_agents([agent])
        # node-2 runs a task and is stopped; the task ends within the grace
        only(cluster, "node-2")
        first = script(cluster, "node-1", body, "web-1")
        assert cluster.wait_running("node-1", first) == "node-2"
        wait_until(lambda: lines(record) == ["start"], 60, "the script to start")
        thread, codes = stop_in_thread(cluster, "node-2")
        wait_until(lambda: refuses(cluster, "node-2"), 30, "node-2 to stop serving")
        assert cluster.node_rows("node-1")["node-2"]["state"] == "alive"  # still finishing
        go.touch()
        thread.join(GRACE + 60)
        assert codes == [0]
        finished = cluster.wait_final("node-1", first)
        assert finished["state"] == "success" and finished["node"] == "node-2", finished
        stopped = cluster.node_rows("node-1")["node-2"]
        assert stopped["state"] == "stopped" and stopped["reason"] == "stopped (SIGTERM)"
        cluster.forget("node-2")
        # node-3 runs one that outlasts the grace: failed with the restart message
        go.unlink()
        only(cluster, "node-3")
        second = script(cluster, "node-1", body, "web-1")
        assert cluster.wait_running("node-1", second) == "node-3"
        wait_until(lambda: lines(record).count("start") == 2, 60, "the second start")
        thread, codes = stop_in_thread(cluster, "node-3")
        thread.join(GRACE + 60)
        assert codes == [0]
        failed = cluster.wait_final("node-1", second)
        assert failed["state"] == "failed" and failed["error"] == RESTART_MESSAGE, failed
        cluster.forget("node-3")
        # the remaining node takes new work (its drain lifted)
        cluster.call("node-1", "POST", "/nodes/node-1/undrain")
        go.touch()
        third = script(cluster, "node-1", body, "web-1")
        done = cluster.wait_final("node-1", third)
        assert done["state"] == "success" and done["node"] == "node-1"
