"""Numbered schema migrations, applied in order on start.

Each migration is a module ``mNNNN_<what>.py`` with ``VERSION`` and ``apply(db)``. The runner
applies every migration above the recorded version, each in its own transaction, and records it;
a new database gets all of them in one transaction, so a node starting beside the one making
it never sees half a schema.
A database newer than the code refuses to start. Nodes sharing a PostgreSQL database may start
together after an upgrade: each migration's transaction first takes a transaction-level
advisory lock (:data:`LOCK_KEY`; on SQLite the write lock, ``BEGIN IMMEDIATE``) and re-reads
the version, so one node applies it and the others, having waited, skip it.

Every migration states its own schema as frozen SQL (:mod:`.ddl`), never through the current
models: a migration that creates tables from today's models creates different tables tomorrow,
so a fresh database and an upgraded one would drift apart as the models change. Plain SQL was
chosen over frozen copies of peewee models because it is also immune to how a future peewee
renders a model; the few type names SQLite and PostgreSQL spell differently are placeholders.
A migration that must read or write rows declares its own small model of the columns it
touches (see ``m0006``).

Never edit a released migration: add one. ``tests/engine/test_schema.py`` builds a database
from the migrations and one from the models and fails when they differ, so a model change
without its migration cannot pass; it also holds the schema of version 6 as released.
"""

from __future__ import annotations

import hashlib
import importlib
from types import ModuleType

import peewee

from octo_appliance.db.connection import write_transaction
from octo_appliance.db.migrations.ddl import backend, execute
from octo_appliance.db.schema import SchemaVersion
from octo_appliance.exceptions import DatabaseError

MIGRATION_MODULES: tuple[str, ...] = (
    "m0001_initial",
    "m0002_tasks",
    "m0003_target_identity",
    "m0004_deployments",
    "m0005_packages",
    "m0006_task_not_before",
    "m0007_target_transport",
    "m0008_registration_tokens",
    "m0009_nodes",
    "m0010_call_relay",
)

#: The runner's own table (what :class:`SchemaVersion` reads and writes), frozen like the rest.
CREATE_SCHEMA_VERSION = (
    'CREATE TABLE IF NOT EXISTS "schema_version" '
    '("version" INTEGER NOT NULL PRIMARY KEY, "applied_at" {DATETIME} NOT NULL)'
)

#: A fixed 64-bit key in PostgreSQL's advisory-lock space, held while a migration runs.
LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"octo-appliance/migrate").digest()[:8], "big", signed=True
)


def _migrations() -> list[ModuleType]:
    modules = [importlib.import_module(f"{__name__}.{name}") for name in MIGRATION_MODULES]
    return sorted(modules, key=lambda module: int(module.VERSION))


def latest_version() -> int:
    return max(int(module.VERSION) for module in _migrations())


def current_version(db: peewee.Database) -> int:
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return int(row or 0)


def migrate(db: peewee.Database, *, until: int | None = None) -> list[int]:
    """Apply pending migrations (up to version ``until``, default all); return those this
    call applied (another node may have applied some meanwhile)."""
    with write_transaction(db):
        serialise(db)
        execute(db, [CREATE_SCHEMA_VERSION])
        if current_version(db) == 0:
            # a new database is made in this one transaction: a node starting beside this one
            # sees no schema or all of it, never a part it would take for an old release's
            # database and back up before "upgrading" (a backup that cannot work yet)
            return [_apply(db, module) for module in _pending(0, until)]
    have = current_version(db)
    if have > latest_version():
        raise DatabaseError(
            f"the database is at schema version {have}, newer than this appliance knows "
            f"({latest_version()})",
            hint="run the newer appliance version, or restore a backup made by this one",
        )
    applied = []
    for module in _pending(have, until):
        with write_transaction(db):
            serialise(db)
            if int(module.VERSION) <= current_version(db):  # another node applied it meanwhile
                continue
            applied.append(_apply(db, module))
    return applied


def _pending(have: int, until: int | None) -> list[ModuleType]:
    """The migrations above version ``have``, up to ``until`` (default all), in order."""
    return [
        module
        for module in _migrations()
        if have < int(module.VERSION) and (until is None or int(module.VERSION) <= until)
    ]


def _apply(db: peewee.Database, module: ModuleType) -> int:
    """Apply ``module`` and record its version, in the caller's transaction."""
    version = int(module.VERSION)
    module.apply(db)
    SchemaVersion.create(version=version)
    return version


def serialise(db: peewee.Database) -> None:
    """One migrating (or first-starting) node at a time on PostgreSQL, until this transaction
    ends (on SQLite the write lock that :func:`write_transaction` took does it)."""
    if backend(db) == "postgresql":
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))  # type: ignore[no-untyped-call]
