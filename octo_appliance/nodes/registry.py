"""The node registry in the database: register at start, heartbeat, the lease, the reaper.

Every function here is synchronous (peewee): call it from a worker thread. Times are the
database's clock (:func:`db_now`), so two nodes whose clocks differ still agree on whose
heartbeat is old.

The lease: a node may claim tasks only while its row is ``alive`` under the generation it
registered, not draining, and its heartbeat is younger than ``dead_after``
(:func:`holds_lease`, checked inside the claim's transaction, the row locked ``FOR SHARE`` on
PostgreSQL). The reaper (:func:`reap`) locks the row ``FOR UPDATE``, marks it ``dead`` and fails
the node's executing tasks in one transaction, so a claim either committed before (its tasks
are failed too) or sees the node dead and claims nothing: no task is left running under a dead
node's name, and none is claimed by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import peewee

from octo_appliance.db.base import new_id, utcnow
from octo_appliance.db.connection import write_transaction
from octo_appliance.db.nodes import ALIVE, DEAD, STOPPED, Node
from octo_appliance.engine.tasks.store import executing_on, fail_orphan
from octo_appliance.exceptions import ConfigError
from octo_appliance.vault import Vault


@dataclass(frozen=True)
class NodeInfo:
    """What a node says about itself when it registers."""

    name: str
    address: str
    polling_address: str
    version: str
    task_cap: int
    key_id: str
    plugins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Registered:
    generation: int
    draining: bool
    #: plugins another live node loaded that this one did not
    missing_plugins: list[str]


def db_now(db: peewee.Database) -> datetime:
    """The database's time, naive UTC (SQLite: this process's clock, there is one node)."""
    if isinstance(db, peewee.PostgresqlDatabase):
        cursor = db.execute_sql("SELECT (now() AT TIME ZONE 'UTC')")  # type: ignore[no-untyped-call]
        value: datetime = cursor.fetchone()[0]
        return value
    return utcnow()


def _locked(db: peewee.Database, query: Any, mode: str = "FOR UPDATE") -> Any:
    return query.for_update(mode) if isinstance(db, peewee.PostgresqlDatabase) else query


def dead_message(name: str, last: datetime | None) -> str:
    when = f" (last at {last.isoformat(timespec='seconds')}Z)" if last else ""
    return (
        f"appliance node '{name}' stopped sending heartbeats{when} and was declared dead "
        "while this task ran on it; re-run it"
    )


def fail_tasks_of(db: peewee.Database, vault: Vault, name: str, message: str) -> list[str]:
    """Fail every task ``executing`` under node ``name`` (inside the caller's transaction)."""
    ids = executing_on(name)
    return [task_id for task_id in ids if fail_orphan(db, vault, task_id, name, message)]


def _live(row: Node, now: datetime, dead_after: float) -> bool:
    return row.state == ALIVE and row.heartbeat_at > now - timedelta(seconds=dead_after)


def _refuse_other_key(row: Node, key_id: str) -> ConfigError:
    return ConfigError(
        f"this node's master key (id {key_id}) differs from the key of live node "
        f"'{row.name}' (id {row.key_id})",
        hint="every node must use the same master key: give this node the same key file "
        "(master_key_file) or OCTO_MASTER_KEY as the others",
    )


def check_master_key(db: peewee.Database, key_id: str, dead_after: float) -> None:
    """Refuse (ConfigError) a key other than the one the live nodes seal with: checked at
    start before anything sealed is opened, so the error says what is wrong."""
    now = db_now(db)
    for row in Node.select():
        if _live(row, now, dead_after) and row.key_id and row.key_id != key_id:
            raise _refuse_other_key(row, key_id)


def register(db: peewee.Database, vault: Vault, info: NodeInfo, dead_after: float) -> Registered:
    """Record this node as alive under a new generation, or refuse (ConfigError) when a live
    node already has its name (PostgreSQL), or when a live node seals with another master key."""
    with write_transaction(db):
        now = db_now(db)
        others = list(_locked(db, Node.select()))
        live = [row for row in others if _live(row, now, dead_after)]
        # SQLite is one node's own file: a row of its name is a previous run of it (or of the
        # data a restored backup holds), never another live node
        shared = isinstance(db, peewee.PostgresqlDatabase)
        for row in live:
            if row.name == info.name and shared:
                age = (now - row.heartbeat_at).total_seconds()
                raise ConfigError(
                    f"a live appliance node named '{info.name}' is already registered "
                    f"(at {row.address or 'an unknown address'}, heartbeat {age:.0f} s ago)",
                    hint="give each node its own name (setting node_name, --node-name or "
                    "OCTO_NODE_NAME); if that node is gone, wait "
                    f"{dead_after:.0f} s for its heartbeat to expire",
                )
            if row.key_id and row.key_id != info.key_id:
                raise _refuse_other_key(row, info.key_id)
        # what a previous run of this name left executing, the task engine fails at its start
        # with the restart message, as a single node always did
        mine = next((row for row in others if row.name == info.name), None)
        fields = {
            "address": info.address,
            "polling_address": info.polling_address,
            "version": info.version,
            "started_at": now,
            "heartbeat_at": now,
            "state": ALIVE,
            "reason": "",
            "task_cap": info.task_cap,
            "running": 0,
            "key_id": info.key_id,
            "plugins": sorted(info.plugins),
        }
        if mine is None:
            generation = 1
            Node.insert(id=new_id(Node.id_prefix), name=info.name, generation=1, **fields).execute()
            draining = False
        else:
            generation = mine.generation + 1
            Node.update(generation=generation, **fields).where(Node.id == mine.id).execute()
            draining = mine.draining
    theirs = {p for row in live if row.name != info.name for p in row.plugins}
    missing = sorted(theirs - set(info.plugins))
    return Registered(generation, draining, missing)


@dataclass(frozen=True)
class Beat:
    """The answer to a heartbeat: None from :func:`heartbeat` means the lease is lost."""

    draining: bool


def heartbeat(db: peewee.Database, name: str, generation: int, running: int) -> Beat | None:
    """Refresh this node's heartbeat; None when it was declared dead (or another start of its
    name took over): it must stop its tasks at once."""
    with write_transaction(db):
        now = db_now(db)
        changed = (
            Node.update(heartbeat_at=now, running=running)
            .where((Node.name == name) & (Node.generation == generation) & (Node.state == ALIVE))
            .execute()
        )
        if changed != 1:
            return None
        row = Node.get(Node.name == name)
    return Beat(draining=bool(row.draining))


def holds_lease(db: peewee.Database, name: str, generation: int, dead_after: float) -> bool:
    """Whether this node may claim tasks now (inside the claim's transaction; see the module
    doc): alive under its generation, fresh, not draining."""
    condition = (
        (Node.name == name)
        & (Node.generation == generation)
        & (Node.state == ALIVE)
        & (Node.draining == False)  # noqa: E712
    )
    if isinstance(db, peewee.PostgresqlDatabase):  # SQLite: one node, nobody declares it dead
        condition &= Node.heartbeat_at > db_now(db) - timedelta(seconds=dead_after)
    query = Node.select(Node.id).where(condition)
    return bool(list(_locked(db, query, "FOR SHARE")))


def reap(
    db: peewee.Database, vault: Vault, dead_after: float, me: str = ""
) -> dict[str, list[str]]:
    """Declare dead every other node (not ``me``: a node late with its own heartbeat fences
    itself instead) whose heartbeat is older than ``dead_after`` and fail its executing tasks
    naming it. Returns node name -> the ids of the tasks failed."""
    reaped: dict[str, list[str]] = {}
    with write_transaction(db):
        now = db_now(db)
        stale = Node.select().where(
            (Node.state == ALIVE)
            & (Node.name != me)
            & (Node.heartbeat_at <= now - timedelta(seconds=dead_after))
        )
        if isinstance(db, peewee.PostgresqlDatabase):
            stale = stale.for_update(skip_locked=True)
        for row in list(stale):
            message = dead_message(row.name, row.heartbeat_at)
            Node.update(state=DEAD, reason=message, running=0).where(
                (Node.id == row.id) & (Node.generation == row.generation)
            ).execute()
            reaped[row.name] = fail_tasks_of(db, vault, row.name, message)
    return reaped


def mark_stopped(db: peewee.Database, name: str, generation: int, reason: str) -> None:
    with write_transaction(db):
        Node.update(state=STOPPED, reason=reason, running=0).where(
            (Node.name == name) & (Node.generation == generation) & (Node.state == ALIVE)
        ).execute()


def set_draining(ref: str, draining: bool) -> Node | None:
    """Drain (or undrain) the node of that name (or id); None when there is none."""
    which = (Node.name == ref) | (Node.id == ref)
    changed = Node.update(draining=draining).where(which).execute()
    return Node.get_or_none(which) if changed else None


def list_nodes() -> list[Node]:
    return list(Node.select().order_by(Node.name))


def missing_plugins(rows: list[Node], now: datetime, dead_after: float) -> dict[str, list[str]]:
    """For each node: plugins another live node loaded that it did not."""
    live = [row for row in rows if _live(row, now, dead_after)]
    everywhere = {p for row in live for p in row.plugins}
    return {row.name: sorted(everywhere - set(row.plugins)) for row in rows}
