"""Schema version 9: the node registry (several appliance nodes on one PostgreSQL; a single
node has one row). Frozen (see :mod:`.ddl`)."""

from __future__ import annotations

import peewee

from octo_appliance.db.migrations.ddl import ID, execute, index, table

VERSION = 9

STATEMENTS: tuple[str, ...] = (
    table(
        "node",
        ID,
        '"name" VARCHAR(100) NOT NULL',
        '"address" VARCHAR(300) NOT NULL',
        '"polling_address" VARCHAR(300) NOT NULL',
        '"version" VARCHAR(40) NOT NULL',
        '"started_at" {DATETIME} NOT NULL',
        '"heartbeat_at" {DATETIME} NOT NULL',
        '"generation" INTEGER NOT NULL',
        '"state" VARCHAR(20) NOT NULL',
        '"reason" TEXT NOT NULL',
        '"task_cap" INTEGER NOT NULL',
        '"running" INTEGER NOT NULL',
        '"draining" {BOOLEAN} NOT NULL',
        '"key_id" VARCHAR(64) NOT NULL',
        '"plugins" TEXT NOT NULL',
    ),
    index("node", "name", unique=True),
)


def apply(db: peewee.Database) -> None:
    execute(db, STATEMENTS)
