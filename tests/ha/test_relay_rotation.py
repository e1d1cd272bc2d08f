"""Master-key rotation and the relay's rows (docs/ha.md, "Master-key rotation and the relay").

A node killed in a relayed call leaves its sealed call, events and chunks in the database. A
rotation (which runs only while no node runs) deletes them rather than leave rows under the
retired key that nothing could open: the real ``master-key rotate`` command on a throwaway
PostgreSQL database.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import psycopg
import pytest

from octo_appliance.appliance import open_appliance
from octo_appliance.config import load_config
from octo_appliance.db import new_id
from octo_appliance.db.relay import (
    RelayAgent,
    RelayCall,
    RelayChunk,
    RelayEvent,
    RelayNode,
)
from octo_appliance.testing import keep_key_beside
from octo_appliance.transports.relay.wire import seal, unseal
from octo_appliance.vault import Vault
from octo_appliance.vault.keys import read_keyring_file
from tests.child_process import run_module

pytestmark = [pytest.mark.postgres]


def _relay_bodies(database: str) -> list[tuple[str, str, str]]:
    """(table, call id, sealed text) of every sealed relay column."""
    found = []
    with psycopg.connect(database) as conn:
        for table, call_column, columns in (
            ("relay_call", "id", ("body", "outcome")),
            ("relay_event", "call_id", ("body",)),
            ("relay_chunk", "call_id", ("body",)),
        ):
            for column in columns:
                query = f'SELECT "{call_column}", "{column}" FROM "{table}"'
                for call_id, text in conn.execute(query).fetchall():
                    if text is not None:
                        found.append((f"{table}.{column}", call_id, text))
    return found


def _relay_rows(database: str) -> int:
    total = 0
    with psycopg.connect(database) as conn:
        for table in ("relay_node", "relay_agent", "relay_call", "relay_event", "relay_chunk"):
            row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            total += int(row[0]) if row else 0
    return total


def _rotate(data_dir: Path, database: str) -> subprocess.CompletedProcess[str]:
    args = ["--data-dir", str(data_dir), "--database", database]
    return run_module("octo_appliance", "master-key", "rotate", *args)


def test_rotation_deletes_the_relay_rows_a_killed_node_left(
    tmp_path: Path, ha_database: str
) -> None:
    data_dir = tmp_path / "data"
    key_file = keep_key_beside(data_dir)
    config = load_config({"data_dir": str(data_dir), "database": ha_database}, environ={})
    appliance, _ = open_appliance(config, environ={"OCTO_ADMIN_PASSWORD": secrets.token_hex(8)})
    vault = appliance.vault
    secret = "s3cret-" + secrets.token_hex(6)
    # what node A (which handed the call away) and node B (the agent's) leave when killed
    origin = RelayNode.create(id=new_id("rnode"), label="node-a")
    target = RelayNode.create(id=new_id("rnode"), label="node-b")
    RelayAgent.create(id=new_id("ragent"), thumbprint="ab" * 32, node=target)
    call_id = new_id("rcall")
    request = {"method": "runner.run", "params": {"variables": {"Password": secret}}}
    RelayCall.create(
        id=call_id,
        origin_node=origin.id,
        target_node=target.id,
        method="runner.run",
        body=seal(vault, call_id, "request", request),
        state="running",
    )
    RelayEvent.create(
        id=new_id("revent"),
        call=call_id,
        seq=0,
        body=seal(vault, call_id, "event/0", {"line": f"using {secret}"}),
    )
    RelayChunk.create(
        id=new_id("rchunk"),
        call=call_id,
        direction="up",
        seq=0,
        body=vault.seal(secret, f"relay/{call_id}/up/0".encode()),
    )
    appliance.close()
    old = read_keyring_file(key_file)
    bodies = _relay_bodies(ha_database)
    assert len(bodies) == 3 and all(secret not in text for _, _, text in bodies)
    assert unseal(Vault(old), call_id, "request", bodies[0][2]) == request

    done = _rotate(data_dir, ha_database)
    assert done.returncode == 0, done.stderr
    new = read_keyring_file(key_file)
    assert not new.rotating and new.current != old.current
    # No relay row is left under the retired key (nor in the clear): there is none at all.
    assert _relay_rows(ha_database) == 0
    assert "deleted 6 row(s) of calls between nodes that stopped nodes left" in done.stdout

    again = _rotate(data_dir, ha_database)
    assert again.returncode == 0, again.stderr
    assert "row(s) of calls between nodes" not in again.stdout
