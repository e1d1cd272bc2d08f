"""Frozen DDL: the text a migration runs, written once for SQLite and PostgreSQL.

A migration states its schema as SQL it owns, never through the current models: peewee builds
a model's DDL from today's fields (and from the installed peewee's habits), so a migration that
asked the models would create a different table tomorrow than it did yesterday. The few type
names the backends spell differently are placeholders filled in here (``{DATETIME}``,
``{BOOLEAN}``, ``{BIGINT}``); everything else is the same text on both.

The helpers render the statements exactly as peewee 4 did when migrations 1-6 asked the models
(one line, double-quoted names, indexes named ``<table>_<columns>``), so a database created by
either way has the same schema, down to SQLite's stored ``CREATE`` text.
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee

from octo_appliance.exceptions import DatabaseError

#: Type names per backend, as peewee's field types map them.
TYPES: dict[str, dict[str, str]] = {
    "sqlite": {"DATETIME": "DATETIME", "BOOLEAN": "INTEGER", "BIGINT": "INTEGER"},
    "postgresql": {"DATETIME": "TIMESTAMP", "BOOLEAN": "BOOLEAN", "BIGINT": "BIGINT"},
}

#: The primary key of every table (``BaseModel.id``).
ID = '"id" VARCHAR(40) NOT NULL PRIMARY KEY'


def backend(db: peewee.Database) -> str:
    """``sqlite`` or ``postgresql``: the two backends the appliance supports."""
    if isinstance(db, peewee.PostgresqlDatabase):
        return "postgresql"
    if isinstance(db, peewee.SqliteDatabase):
        return "sqlite"
    raise DatabaseError(
        f"unsupported database {type(db).__name__}",
        hint="use SQLite (the default) or PostgreSQL",
    )


def table(name: str, *definitions: str) -> str:
    """``CREATE TABLE`` with one column or constraint definition per argument."""
    return f'CREATE TABLE "{name}" ({", ".join(definitions)})'


def foreign_key(column: str, parent: str, on_delete: str = "CASCADE") -> str:
    """A table constraint: ``column`` references ``parent.id``."""
    return f'FOREIGN KEY ("{column}") REFERENCES "{parent}" ("id") ON DELETE {on_delete}'


def index(name: str, *columns: str, unique: bool = False) -> str:
    """``CREATE [UNIQUE] INDEX "<table>_<columns>"`` on table ``name``."""
    kind = "UNIQUE INDEX" if unique else "INDEX"
    quoted = ", ".join(f'"{column}"' for column in columns)
    return f'CREATE {kind} "{name}_{"_".join(columns)}" ON "{name}" ({quoted})'


def execute(db: peewee.Database, statements: Iterable[str]) -> None:
    """Run ``statements`` in order with this backend's type names filled in."""
    types = TYPES[backend(db)]
    for statement in statements:
        db.execute_sql(statement.format_map(types))  # type: ignore[no-untyped-call]


def columns(db: peewee.Database, name: str) -> set[str]:
    """The column names table ``name`` has now."""
    return {column.name for column in db.get_columns(name)}
