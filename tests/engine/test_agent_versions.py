"""The versions agents say at connect are written in batches: after a restart every agent
reconnects within seconds, and one transaction per agent would queue thousands of commits
(docs/performance.md, "5,000 polling agents")."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import peewee
import pytest

from octo_appliance.comms import generate_identity
from octo_appliance.db import Target
from octo_appliance.db.connection import write_transaction
from octo_appliance.engine import agent_updates
from octo_appliance.engine.agent_updates import AgentUpdates, UpdatePolicy
from octo_appliance.transports.base import TargetAddress


def register(api: Any, name: str) -> TargetAddress:
    identity = generate_identity(name)
    body = {
        "name": name,
        "environments": ["Dev"],
        "roles": ["web"],
        "communication_style": "polling",
        "thumbprint": identity.thumbprint,
        "certificate": identity.cert_pem.decode(),
    }
    response = api.post("/targets/register", json=body)
    assert response.status_code == 201, response.text
    return TargetAddress(response.json()["id"], name, "polling", thumbprint=identity.thumbprint)


async def test_versions_said_at_connect_are_recorded_in_batches(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.post("/environments", json={"name": "Dev"})
    targets = [register(api, f"web-{n}-{secrets.token_hex(3)}") for n in range(30)]
    network = SimpleNamespace(agent_build=None, hello_observers=[])
    updates = AgentUpdates(network, UpdatePolicy(mode="manual"))  # type: ignore[arg-type]
    updates.start()

    transactions: list[int] = []

    @contextlib.contextmanager
    def counted(db: peewee.Database) -> Iterator[None]:
        transactions.append(1)
        with write_transaction(db):
            yield

    monkeypatch.setattr(agent_updates, "write_transaction", counted)
    for target in targets:  # every agent connects at once, as after a restart
        updates.observe(target, {"agent_version": "9.9.9"})
    updates.observe(targets[0], {"agent_version": "9.9.9"})  # the same again: no write
    await updates.stop()

    versions = {
        t.agent_version for t in Target.select().where(Target.id << [t.id for t in targets])
    }
    assert versions == {"9.9.9"}
    assert 1 <= len(transactions) <= 2  # the first batch, and what came while it was written


async def test_a_version_whose_write_failed_is_written_at_the_next_connect(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database was locked or away: the target's row must not keep the old version
    until the agent says yet another one (its update would show ``available`` for ever)."""
    api.post("/environments", json={"name": "Dev"})
    target = register(api, f"web-{secrets.token_hex(3)}")
    network = SimpleNamespace(agent_build=None, hello_observers=[])
    updates = AgentUpdates(network, UpdatePolicy(mode="manual"))  # type: ignore[arg-type]
    updates.start()

    @contextlib.contextmanager
    def locked(db: peewee.Database) -> Iterator[None]:
        raise peewee.OperationalError("database is locked")
        yield

    monkeypatch.setattr(agent_updates, "write_transaction", locked)
    updates.observe(target, {"agent_version": "2.0.0"})
    await updates.stop()
    assert Target.get_by_id(target.id).agent_version != "2.0.0"

    monkeypatch.setattr(agent_updates, "write_transaction", write_transaction)
    updates.observe(target, {"agent_version": "2.0.0"})  # the agent's next connect
    await updates.stop()
    assert Target.get_by_id(target.id).agent_version == "2.0.0"
