"""Empty databases to migrate, and what a database's schema looks like, read back from it.

:func:`empty_databases` backs the ``open_empty`` fixtures (``tests/engine/conftest.py``): new
databases of one backend, on PostgreSQL each a database of its own on the ``pg_url`` server.

:func:`shape` gives the same structure on SQLite and PostgreSQL: per table its columns (type,
length, nullability, default), indexes (columns, unique) and constraints (primary key, foreign
keys with their actions). ``exact`` adds what only an identical creation reproduces: column
order and, on SQLite, the stored ``CREATE`` text. :func:`differences` says, line by line, where
two shapes disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import psycopg
import pytest

from octo_appliance.db.connection import open_database

Shape = dict[str, Any]
Opener = Callable[[str], peewee.Database]


def empty_databases(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> Iterator[Opener]:
    """Yield ``open(name)``, which opens a new, empty database; drop them all afterwards.

    (Opening binds the models to the database opened last.)"""
    created: list[str] = []
    opened: list[peewee.Database] = []
    server = ""

    def open_empty(name: str) -> peewee.Database:
        nonlocal server
        if backend == "sqlite":
            db = open_database(None, tmp_path / name)
        else:
            server, _, base = request.getfixturevalue("pg_url").rpartition("/")
            database = f"{base}_{name}"
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
                admin.execute(f'CREATE DATABASE "{database}"')
            created.append(database)
            db = open_database(f"{server}/{database}", tmp_path)
        opened.append(db)
        return db

    yield open_empty
    for db in opened:
        db.close()
    for database in created:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def shape(db: peewee.Database) -> Shape:
    if isinstance(db, peewee.PostgresqlDatabase):
        return _postgresql(db)
    return _sqlite(db)


def _rows(db: peewee.Database, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in db.execute_sql(sql).fetchall()]


def _sqlite(db: peewee.Database) -> Shape:
    tables: dict[str, Any] = {}
    order: dict[str, list[str]] = {}
    tables_sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    for (name,) in _rows(db, tables_sql):
        info = _rows(db, f'PRAGMA table_info("{name}")')
        order[name] = [row[1] for row in info]
        indexes = {}
        for _, index, unique, origin, _partial in _rows(db, f'PRAGMA index_list("{name}")'):
            indexed = [row[2] for row in _rows(db, f'PRAGMA index_info("{index}")')]
            indexes[index] = {"columns": indexed, "unique": bool(unique), "origin": origin}
        keys = _rows(db, f'PRAGMA foreign_key_list("{name}")')
        tables[name] = {
            "columns": {
                row[1]: {"type": row[2], "not_null": bool(row[3]), "default": row[4]}
                for row in info
            },
            "primary_key": [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]],
            "indexes": indexes,
            "foreign_keys": sorted(
                f"{row[3]} -> {row[2]}.{row[4]} ON UPDATE {row[5]} ON DELETE {row[6]}"
                for row in keys
            ),
        }
    stored = _rows(
        db,
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        " ORDER BY type, name",
    )
    return {"tables": tables, "exact": {"column_order": order, "sqlite_master": stored}}


def _postgresql(db: peewee.Database) -> Shape:
    tables: dict[str, Any] = {}
    order: dict[str, list[str]] = {}
    columns = _rows(
        db,
        "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,"
        " column_default FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY table_name, ordinal_position",
    )
    for table, column, kind, length, nullable, default in columns:
        entry = tables.setdefault(table, {"columns": {}, "indexes": {}, "constraints": {}})
        entry["columns"][column] = {
            "type": kind,
            "length": length,
            "not_null": nullable == "NO",
            "default": default,
        }
        order.setdefault(table, []).append(column)
    indexes = _rows(
        db,
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()",
    )
    for table, index, definition in indexes:
        tables[table]["indexes"][index] = definition
    constraints = _rows(
        db,
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
        " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
        " WHERE n.nspname = current_schema()",
    )
    for table, constraint, definition in constraints:
        tables[table.strip('"')]["constraints"][constraint] = definition
    return {"tables": tables, "exact": {"column_order": order}}


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` departs from ``expected``, one line per departure."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual), key=str):
            here = f"{path}.{key}" if path else str(key)
            if key not in actual:
                found.append(f"{here}: missing (expected {expected[key]!r})")
            elif key not in expected:
                found.append(f"{here}: unexpected {actual[key]!r}")
            else:
                found += differences(expected[key], actual[key], here)
        return found
    if expected != actual:
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []
