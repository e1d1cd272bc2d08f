"""A database at schema version 1 (before tasks) migrates to version 2."""

from __future__ import annotations

from octo_appliance.db.connection import open_database
from octo_appliance.db.migrations import current_version, latest_version, m0001_initial, migrate
from octo_appliance.db.schema import SchemaVersion
from octo_appliance.db.tasks import TASK_MODELS


def test_version_1_database_gains_the_task_tables(tmp_path):
    db = open_database(None, tmp_path)
    try:
        with db.atomic():
            db.create_tables([SchemaVersion])
            m0001_initial.apply(db)
            SchemaVersion.create(version=1)
        assert not any(db.table_exists(model._meta.table_name) for model in TASK_MODELS)
        applied = migrate(db)
        assert applied[0] == 2  # (later versions may follow)
        assert current_version(db) == latest_version()
        assert all(db.table_exists(model._meta.table_name) for model in TASK_MODELS)
        assert migrate(db) == []
    finally:
        db.close()
