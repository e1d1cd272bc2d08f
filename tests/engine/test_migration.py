"""Older databases migrate: version 1 (before tasks) gains the task tables, and the target
certificate when it was made before that column; version 5 gains the tasks' ``not_before``.
The migrations state their own schema: none uses the models.

(``test_schema.py`` compares the schema the migrations build with the models'.)"""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path

from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as playhouse_migrate

import octo_appliance.db.migrations as migrations_package
from octo_appliance.db.connection import open_database
from octo_appliance.db.migrations import current_version, latest_version, migrate
from octo_appliance.db.schema import SchemaVersion
from octo_appliance.db.tasks import ServerTask

TASK_TABLES = ("server_task", "task_target_result", "task_log_line")


def test_version_1_database_gains_the_task_tables(tmp_path):
    db = open_database(None, tmp_path)
    try:
        assert migrate(db, until=1) == [1]
        assert not any(db.table_exists(table) for table in TASK_TABLES)
        applied = migrate(db)
        assert applied[0] == 2  # (later versions may follow)
        assert current_version(db) == latest_version()
        assert all(db.table_exists(table) for table in TASK_TABLES)
        assert migrate(db) == []
    finally:
        db.close()


def test_a_target_keeps_its_environments_and_roles_when_it_gains_its_certificate(tmp_path):
    """Version-1 databases made before ``target.certificate`` existed: adding the column must
    not rebuild the table (on SQLite that deletes the links through ON DELETE CASCADE)."""
    db = open_database(None, tmp_path)
    try:
        migrate(db, until=1)
        db.execute_sql('ALTER TABLE "target" DROP COLUMN "certificate"')
        db.execute_sql("INSERT INTO environment VALUES ('env_1', 'Dev', '', 0, '2026-01-01')")
        db.execute_sql(
            "INSERT INTO target (id, name, communication_style, uri, thumbprint, disabled,"
            " health_status, agent_version, created_at)"
            " VALUES ('tgt_1', 'web-1', 'none', '', '', 0, 'Unknown', '', '2026-01-01')"
        )
        db.execute_sql("INSERT INTO target_environment VALUES ('tge_1', 'tgt_1', 'env_1')")
        db.execute_sql("INSERT INTO target_role VALUES ('tgr_1', 'tgt_1', 'web')")

        migrate(db)

        assert db.execute_sql("SELECT certificate FROM target").fetchall() == [("",)]
        assert db.execute_sql("SELECT id FROM target_environment").fetchall() == [("tge_1",)]
        assert db.execute_sql("SELECT id FROM target_role").fetchall() == [("tgr_1",)]
    finally:
        db.close()


def test_no_migration_uses_the_models():
    """A migration that imported today's models would build tomorrow's tables differently."""
    offenders = []
    for path in sorted(Path(migrations_package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                package = "octo_appliance.db.migrations".rsplit(".", node.level - 1)[0]
                names = [f"{package}.{node.module or ''}" if node.level else node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("octo_appliance.db") and not name.startswith(
                    ("octo_appliance.db.migrations", "octo_appliance.db.schema")
                ):
                    offenders.append(f"{path.name}: imports {name}")
    assert not offenders, offenders


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
