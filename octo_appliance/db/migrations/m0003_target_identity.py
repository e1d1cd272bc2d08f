"""Schema version 3: targets keep their agent's certificate (the comms trust anchor).

Migration 1 creates the column since this version exists; only version-1 databases made
before it lack the column and gain it here. On SQLite the column is added with
``DEFAULT ''`` (SQLite adds a ``NOT NULL`` column only with a default; the alternative, a
table rebuild, would drop the target's environment and role links through their
``ON DELETE CASCADE``). On PostgreSQL the default is dropped again, as on a fresh database.
"""

from __future__ import annotations

import peewee

from octo_appliance.db.migrations.ddl import backend, columns, execute

VERSION = 3

ADD_COLUMN = 'ALTER TABLE "target" ADD COLUMN "certificate" TEXT NOT NULL DEFAULT \'\''
DROP_DEFAULT = 'ALTER TABLE "target" ALTER COLUMN "certificate" DROP DEFAULT'


def apply(db: peewee.Database) -> None:
    if "certificate" in columns(db, "target"):
        return
    execute(db, [ADD_COLUMN] if backend(db) == "sqlite" else [ADD_COLUMN, DROP_DEFAULT])
