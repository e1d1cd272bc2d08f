"""Numbered schema migrations, applied in order on start.

Each migration is a module ``mNNNN_<what>.py`` with ``VERSION`` and ``apply(db)``. The runner
applies every migration above the recorded version, each in its own transaction, and records it.
Later migrations alter tables with ``playhouse.migrate``; never edit a released migration.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import peewee

from octo_appliance.db.schema import SchemaVersion
from octo_appliance.exceptions import DatabaseError

MIGRATION_MODULES: tuple[str, ...] = (
    "m0001_initial",
    "m0002_tasks",
    "m0003_target_identity",
    "m0004_deployments",
    "m0005_packages",
    "m0006_task_not_before",
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


def migrate(db: peewee.Database) -> list[int]:
    """Apply pending migrations; return the versions applied."""
    with db.atomic():
        db.create_tables([SchemaVersion], safe=True)
    have = current_version(db)
    if have > latest_version():
        raise DatabaseError(
            f"the database is at schema version {have}, newer than this appliance knows "
            f"({latest_version()})",
            hint="run the newer appliance version, or restore a backup made by this one",
        )
    applied = []
    for module in _migrations():
        version = int(module.VERSION)
        if version <= have:
            continue
        with db.atomic():
            module.apply(db)
            SchemaVersion.create(version=version)
        applied.append(version)
    return applied
