"""Older databases migrate: version 1 (before tasks) gains the task tables, and the target
certificate when it was made before that column; version 5 gains the tasks' ``not_before``.
The migrations state their own schema: none uses the models.

(``test_schema.py`` compares the schema the migrations build with the models'.)"""

from __future__ import annotations

import ast
import importlib
import threading
import time
from pathlib import Path

import psycopg
import pytest

import octo_appliance.db.migrations as migrations_package
from octo_appliance.db.base import BaseModel
from octo_appliance.db.connection import open_database
from octo_appliance.db.migrations import current_version, latest_version, m0001_initial, migrate

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
            offenders += [f"{path.name}: imports {name}" for name in names if _has_models(name)]
    assert not offenders, offenders


def _has_models(module_name: str) -> bool:
    """True when the module defines or re-exports a model class (``BaseModel`` included)."""
    if not module_name.startswith("octo_appliance."):
        return False
    module = importlib.import_module(module_name.rstrip("."))
    return any(
        isinstance(value, type) and issubclass(value, BaseModel) for value in vars(module).values()
    )


@pytest.mark.postgres
def test_nodes_starting_together_apply_each_migration_once(
    open_empty_postgresql, pg_url, monkeypatch
):
    """Two nodes upgraded at once on one PostgreSQL database: the second waits while the first
    migrates, then finds the versions applied; both start."""
    db = open_empty_postgresql("together")
    inside, go_on = threading.Event(), threading.Event()
    apply_first = m0001_initial.apply

    def apply_and_hold(database):
        apply_first(database)
        if threading.current_thread().name == "node-a":
            inside.set()
            go_on.wait(60)

    monkeypatch.setattr(m0001_initial, "apply", apply_and_hold)
    outcomes: dict[str, object] = {}

    def start(name: str) -> None:
        try:
            outcomes[name] = migrate(db)
        except Exception as exc:  # the outcome under test
            outcomes[name] = exc
        finally:
            db.close()

    node_a = threading.Thread(target=start, args=("node-a",), name="node-a")
    node_a.start()
    assert inside.wait(60)
    node_b = threading.Thread(target=start, args=("node-b",), name="node-b")
    node_b.start()
    with psycopg.connect(pg_url, autocommit=True) as watcher:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until node-b waits for node-a
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = %s AND wait_event_type = 'Lock'",
                (db.execute_sql("SELECT current_database()").fetchone()[0],),
            ).fetchone()
            if waiting and waiting[0]:
                break
            time.sleep(0.05)
    go_on.set()
    node_a.join(60)
    node_b.join(60)

    assert all(isinstance(applied, list) for applied in outcomes.values()), outcomes
    applied = sorted([*outcomes["node-a"], *outcomes["node-b"]])  # type: ignore[misc]
    # every migration once (numbers reserved for work in flight may be missing)
    assert applied == sorted(int(module.VERSION) for module in migrations_package._migrations())
    assert current_version(db) == latest_version()


@pytest.mark.postgres
def test_a_node_starting_beside_the_one_making_a_new_database_never_sees_half_a_schema(
    open_empty_postgresql, monkeypatch
):
    """The race a CI run met (``tests/ha/test_first_start.py``): the second node read a schema
    version between none and the latest while the first was making the database a migration
    at a time, took it for an old release's database, and stopped when the backup it takes
    before an upgrade failed. A new database is made in one transaction: the others see none
    of it, then all of it (before: this test read version 9)."""
    db = open_empty_postgresql("half")
    last = migrations_package._migrations()[-1]
    apply_last = last.apply
    inside, go_on = threading.Event(), threading.Event()

    def apply_and_hold(database):
        apply_last(database)  # every earlier migration is applied by now
        inside.set()
        go_on.wait(60)

    monkeypatch.setattr(last, "apply", apply_and_hold)
    outcome: dict[str, object] = {}

    def make() -> None:
        try:
            outcome["applied"] = migrate(db)
        except Exception as exc:  # reported by the assertion below
            outcome["applied"] = exc
        finally:
            db.close()

    maker = threading.Thread(target=make)
    maker.start()
    try:
        assert inside.wait(60)
        seen_meanwhile = current_version(db)  # this thread's own connection: another node
    finally:
        go_on.set()
        maker.join(60)

    assert seen_meanwhile == 0
    every = [int(module.VERSION) for module in migrations_package._migrations()]
    assert outcome["applied"] == every
    assert current_version(db) == latest_version()
