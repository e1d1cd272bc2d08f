"""Several real ``serve`` nodes on one throwaway PostgreSQL database, sharing a master key file
and a shared dir, with agents registered through the first node (:class:`tests.fleet.Fleet`).

Node 1 is the fleet's appliance; the others are :class:`ServeProcess` es on data dirs of their
own, each with its ``node_name``. Every node gets the same settings otherwise, as an operator
would give them: the database, ``master_key_file``, ``shared_dir``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.conftest import PG_SERVER
from tests.fleet import Fleet, wait_until
from tests.serve_process import ServeProcess


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A database of this test's own, dropped at the end."""
    name = f"octo_ha_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Cluster:
    root: Path
    database: str
    fleet: Fleet
    #: node name -> its serve process (node-1 is the fleet's appliance)
    nodes: dict[str, ServeProcess] = field(default_factory=dict)
    _clients: dict[str, httpx.Client] = field(default_factory=dict)

    def settings(self, name: str) -> dict[str, str]:
        return {
            "OCTO_DATABASE": self.database,
            "OCTO_MASTER_KEY_FILE": str(self.root / "key" / "master.key"),
            "OCTO_SHARED_DIR": str(self.root / "shared"),
            "OCTO_NODE_NAME": name,
        }

    def start_node(self, name: str, **extra: str) -> ServeProcess:
        server = ServeProcess(self.root / name, env={**self.settings(name), **extra})
        self.nodes[name] = server
        server.start()
        return server

    def api(self, name: str) -> httpx.Client:
        """An HTTP/2 client of node ``name`` with the fleet's API key."""
        if name not in self._clients:
            headers = {"X-Api-Key": self.fleet.api_key}
            self._clients[name] = self.nodes[name].http2_client(headers=headers, timeout=30.0)
        return self._clients[name]

    def call(self, name: str, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        response = self.api(name).request(method, "/api/v1" + path, **kw)
        assert response.status_code == status, f"{name}: {method} {path}: {response.text}"
        return response.json() if response.content else None

    def node_rows(self, via: str) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in self.call(via, "GET", "/nodes")["items"]}

    def task(self, via: str, task_id: str) -> dict[str, Any]:
        return dict(self.call(via, "GET", f"/tasks/{task_id}"))

    def wait_running(self, via: str, task_id: str, timeout: float = 60) -> str:
        """Until the task executes; the node running it."""
        task = wait_until(
            lambda: (t := self.task(via, task_id))["state"] != "queued" and t,
            timeout,
            f"task {task_id} to start",
        )
        assert task["state"] == "executing", task
        return str(task["node"])

    def wait_final(self, via: str, task_id: str, timeout: float = 90) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (
                    (t := self.task(via, task_id))["state"]
                    in ("success", "failed", "canceled", "timed_out")
                    and t
                ),
                timeout,
                f"task {task_id} to end",
                every=0.2,
            )
        )

    def _close_client(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None:
            client.close()

    def forget(self, name: str) -> None:
        """Stop node ``name`` (if it still runs), close its files, drop it from the cluster."""
        self._close_client(name)
        self.nodes.pop(name).__exit__(None, None, None)

    def kill(self, name: str) -> None:
        self._close_client(name)
        self.nodes[name].stop(signal.SIGKILL)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        for name, server in self.nodes.items():
            if name != "node-1":  # the fleet stops its own
                server.__exit__(None, None, None)


@contextlib.contextmanager
def running_cluster(root: Path, count: int = 2, **extra: str) -> Iterator[Cluster]:
    """``count`` nodes (node-1 … node-N) on a throwaway database; node-1 starts first, alone,
    so it makes the key, the certificate in the shared dir and the admin."""
    with throwaway_database() as database:
        (root / "key").mkdir(parents=True)
        placeholder = Cluster(root, database, Fleet(root))
        env = {**placeholder.settings("node-1"), **extra}
        fleet = Fleet(root / "fleet", serve_env=env)
        cluster = Cluster(root, database, fleet)
        try:
            fleet.start()
            cluster.nodes["node-1"] = fleet.server
            for number in range(2, count + 1):
                cluster.start_node(f"node-{number}", **extra)
            yield cluster
        finally:
            cluster.close()
            fleet.close()
