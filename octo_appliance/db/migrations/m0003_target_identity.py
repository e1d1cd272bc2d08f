"""Schema version 3: targets keep their agent's certificate (the comms trust anchor)."""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

VERSION = 3


def apply(db: peewee.Database) -> None:
    # m0001 creates tables from the current models, so a fresh database has the column.
    columns = {column.name for column in db.get_columns("target")}
    if "certificate" not in columns:
        migrator = SchemaMigrator.from_database(db)
        migrate(migrator.add_column("target", "certificate", peewee.TextField(default="")))
