"""The relay tests' cluster: several ``octo-appliance serve`` nodes on one throwaway
PostgreSQL database, and agents.

A :class:`Cluster` is a :class:`~tests.fleet.Fleet` whose appliance is node 1, plus further
nodes started on the same database, master key and certificate (an operator's certificate,
``tls_cert``/``tls_key``, shared by every node: the agents pin its one thumbprint). Each node
has a name of its own (``node_name``); a task's ``node`` says which ran it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from octo_appliance.comms import generate_identity
from tests.fleet import Fleet, FleetAgent, wait_until
from tests.serve_process import ServeProcess


def shared_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM, unencrypted)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cluster.pem", directory / "cluster.key"
    generate_identity("octo-cluster", ["127.0.0.1", "localhost"]).save(cert_file, key_file)
    return cert_file, key_file


@dataclass
class Cluster(Fleet):
    database: str = ""
    #: the nodes by name; node1 is the fleet's appliance
    nodes: dict[str, ServeProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cert, key = shared_certificate(self.root / "tls")
        self.serve_env.update(
            {
                "OCTO_DATABASE": self.database,
                "OCTO_NODE_NAME": "node1",
                "OCTO_TLS_CERT": str(cert),
                "OCTO_TLS_KEY": str(key),
            }
        )

    def start(self) -> Cluster:
        super().start()
        self.nodes["node1"] = self.server
        return self

    def start_node(self, name: str, **env: str) -> ServeProcess:
        """Another node on the same database, master key and certificate."""
        assert self.server.key_file is not None
        node = ServeProcess(
            self.root / f"{name}-data",
            env={
                **self.serve_env,
                "OCTO_NODE_NAME": name,
                "OCTO_MASTER_KEY_FILE": str(self.server.key_file),
                **env,
            },
            command=self.appliance_command,
        )
        self.appliances.append(node)
        node.start()
        self.nodes[name] = node
        return node

    def polling_address(self, *names: str) -> str:
        return ",".join(f"127.0.0.1:{self.nodes[n].banner.polling_port}" for n in names)

    def register_polling(self, name: str, *node_names: str, roles: tuple[str, ...] = ("web",)):  # type: ignore[no-untyped-def]
        """A polling agent that dials ``node_names`` (in turn)."""
        return self.register(
            name, "polling", roles=roles, polling_address=self.polling_address(*node_names)
        )

    def connected_node(self, agent: FleetAgent) -> str | None:
        """The node the relay records the agent's connection on (by its polling port)."""
        thumbprint = agent.home.load_identity().thumbprint
        with psycopg.connect(self.database, autocommit=True) as conn:
            row = conn.execute(
                'SELECT n."label" FROM "relay_agent" a JOIN "relay_node" n ON n."id" = '
                'a."node_id" WHERE a."thumbprint" = %s',
                (thumbprint,),
            ).fetchone()
        if row is None:
            return None
        for name in self.nodes:
            if str(row[0]).startswith(f"{name} "):
                return name
        return str(row[0])

    def wait_connected_to(self, agents: list[FleetAgent], node: str, timeout: float = 60) -> None:
        for agent in agents:
            wait_until(
                lambda a=agent: self.connected_node(a) == node,
                timeout,
                f"{agent.name} to be connected to {node}",
                every=0.2,
            )

    def api_of(self, node: str) -> Any:
        """An API client of ``node`` with the fleet's key."""
        return self.nodes[node].http2_client(headers={"X-Api-Key": self.api_key}, timeout=60.0)
