"""The node registry against the real database (SQLite and PostgreSQL): registration and its
refusals, heartbeat, the lease a claim asks, the reaper. The processes are in tests/ha."""

from __future__ import annotations

from datetime import timedelta

import peewee
import pytest

from octo_appliance.db.nodes import Node
from octo_appliance.db.tasks import ServerTask
from octo_appliance.engine.tasks.claims import claim_tasks
from octo_appliance.engine.tasks.creation import create_task
from octo_appliance.exceptions import ConfigError
from octo_appliance.nodes import registry
from octo_appliance.nodes.registry import NodeInfo
from tests.engine.support import DEMO

DEAD_AFTER = 30.0


def info(name: str, key_id: str = "k1", plugins: tuple[str, ...] = ()) -> NodeInfo:
    return NodeInfo(name, f"{name}:8443", f"{name}:10943", "0.1.0", 5, key_id, list(plugins))


def age(name: str, seconds: float) -> None:
    """Make node ``name``'s heartbeat ``seconds`` old."""
    moment = registry.db_now(Node._meta.database) - timedelta(seconds=seconds)
    Node.update(heartbeat_at=moment).where(Node.name == name).execute()


def test_a_live_name_and_another_key_are_refused_a_stale_name_is_taken_over(octo) -> None:
    db, vault = octo.appliance.db, octo.appliance.vault
    first = registry.register(db, vault, info("a"), DEAD_AFTER)
    assert first.generation == 1
    if isinstance(db, peewee.PostgresqlDatabase):  # SQLite: one node, a row is its own past
        with pytest.raises(ConfigError, match="a live appliance node named 'a'"):
            registry.register(db, vault, info("a"), DEAD_AFTER)
    with pytest.raises(ConfigError, match=r"master key \(id k2\) differs .* live node 'a'"):
        registry.register(db, vault, info("b", key_id="k2"), DEAD_AFTER)
    with pytest.raises(ConfigError, match="differs from the key of live node 'a'"):
        registry.check_master_key(db, "k2", DEAD_AFTER)
    registry.check_master_key(db, "k1", DEAD_AFTER)
    # its process died: a new start of the name takes over under a new generation (the task
    # engine then fails what it left, with the restart message, as ever)
    age("a", DEAD_AFTER + 1)
    again = registry.register(db, vault, info("a"), DEAD_AFTER)
    assert again.generation == 2
    assert not registry.holds_lease(db, "a", 1, DEAD_AFTER)


def test_the_lease_heartbeat_and_reaper(octo) -> None:
    db, vault = octo.appliance.db, octo.appliance.vault
    gen = registry.register(db, vault, info("a", plugins=("x 1",)), DEAD_AFTER).generation
    other = registry.register(db, vault, info("b"), DEAD_AFTER)
    assert other.missing_plugins == ["x 1"]
    assert registry.holds_lease(db, "a", gen, DEAD_AFTER)
    assert not registry.holds_lease(db, "a", gen + 1, DEAD_AFTER)  # an older start's claim
    registry.set_draining("a", True)
    assert not registry.holds_lease(db, "a", gen, DEAD_AFTER)
    assert registry.heartbeat(db, "a", gen, 0) == registry.Beat(draining=True)
    registry.set_draining("a", False)
    # a claim without the lease takes nothing; with it, the task
    task_id = create_task(vault, kind=DEMO, description="work")
    assert claim_tasks(db, vault, "a", 5, lambda: False) == []
    claimed = claim_tasks(db, vault, "a", 5, lambda: registry.holds_lease(db, "a", gen, 30))
    assert [task.id for task in claimed] == [task_id]
    # "a" goes quiet: "b" declares it dead and fails its task; "a" never reaps itself
    age("a", DEAD_AFTER + 1)
    assert registry.reap(db, vault, DEAD_AFTER, "a") == {}
    assert registry.reap(db, vault, DEAD_AFTER, "b") == {"a": [task_id]}
    assert Node.get(Node.name == "a").state == "dead"
    assert ServerTask.get_by_id(task_id).state == "failed"
    # a paused "a" wakes: its heartbeat and lease are refused
    assert registry.heartbeat(db, "a", gen, 1) is None
    assert not registry.holds_lease(db, "a", gen, DEAD_AFTER)
    registry.mark_stopped(db, "b", other.generation, "stopped (SIGTERM)")
    assert Node.get(Node.name == "b").state == "stopped"
