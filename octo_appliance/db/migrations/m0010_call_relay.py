"""Schema version 10: calls relayed between appliance nodes sharing one PostgreSQL database
(docs/ha.md, "Calls across nodes"): which node each polling agent is connected to, the calls
one node hands another for such an agent, their streamed events and file chunks. Every row is
transient (deleted when its call ends) and its content sealed by the master key. Frozen (see
:mod:`.ddl`)."""

from __future__ import annotations

import peewee

from octo_appliance.db.migrations.ddl import ID, execute, foreign_key, index, table

VERSION = 10

STATEMENTS: tuple[str, ...] = (
    table(
        "relay_node",
        ID,
        '"label" VARCHAR(200) NOT NULL',
        '"seen_at" {DATETIME} NOT NULL',
    ),
    table(
        "relay_agent",
        ID,
        '"thumbprint" VARCHAR(64) NOT NULL',
        '"node_id" VARCHAR(40) NOT NULL',
        '"connected_at" {DATETIME} NOT NULL',
        foreign_key("node_id", "relay_node"),
    ),
    index("relay_agent", "thumbprint", unique=True),
    index("relay_agent", "node_id"),
    table(
        "relay_call",
        ID,
        '"origin_node" VARCHAR(40) NOT NULL',
        '"target_node" VARCHAR(40) NOT NULL',
        '"method" VARCHAR(100) NOT NULL',
        '"body" TEXT NOT NULL',
        '"state" VARCHAR(20) NOT NULL',
        '"outcome" TEXT',
        '"created_at" {DATETIME} NOT NULL',
    ),
    index("relay_call", "target_node", "state"),
    table(
        "relay_event",
        ID,
        '"call_id" VARCHAR(40) NOT NULL',
        '"seq" INTEGER NOT NULL',
        '"body" TEXT NOT NULL',
        foreign_key("call_id", "relay_call"),
    ),
    index("relay_event", "call_id", "seq", unique=True),
    table(
        "relay_chunk",
        ID,
        '"call_id" VARCHAR(40) NOT NULL',
        '"direction" VARCHAR(4) NOT NULL',
        '"seq" INTEGER NOT NULL',
        '"body" TEXT NOT NULL',
        foreign_key("call_id", "relay_call"),
    ),
    index("relay_chunk", "call_id", "direction", "seq", unique=True),
)


def apply(db: peewee.Database) -> None:
    execute(db, STATEMENTS)
