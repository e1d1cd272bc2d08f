"""Older databases migrate: version 1 (before tasks) gains the task tables; version 5 gains
the tasks' ``not_before``."""

from __future__ import annotations

from datetime import datetime

from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as playhouse_migrate

from octo_appliance.db.connection import open_database
from octo_appliance.db.migrations import current_version, latest_version, m0001_initial, migrate
from octo_appliance.db.schema import SchemaVersion
from octo_appliance.db.tasks import TASK_MODELS, ServerTask


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


def test_version_6_moves_the_time_of_queued_scheduled_tasks_into_not_before(tmp_path):
    """A deployment scheduled by an older version (its time only in the arguments) waits
    ``queued`` after the upgrade instead of being claimed at once."""
    db = open_database(None, tmp_path)
    try:
        migrate(db)
        table = ServerTask._meta.table_name
        migrator = SchemaMigrator.from_database(db)
        playhouse_migrate(migrator.drop_column(table, "not_before"))
        SchemaVersion.delete().where(SchemaVersion.version == 6).execute()
        for task_id, state in (("task_waiting", "queued"), ("task_done", "success")):
            ServerTask.insert(
                id=task_id,
                kind="deployment",
                state=state,
                arguments={"deployment_id": "dep_1", "not_before": "2030-01-02T03:04:05.000Z"},
            ).execute()

        assert migrate(db) == [6]

        waiting = ServerTask.get_by_id("task_waiting")
        assert waiting.not_before == datetime(2030, 1, 2, 3, 4, 5)
        assert ServerTask.get_by_id("task_done").not_before is None
    finally:
        db.close()
