"""Schema version 2: server tasks, their per-target results and their sealed log.

Frozen (see :mod:`.ddl`). Version-2 databases made before ``server_task.not_before`` existed
lack that column; migration 6 adds it.
"""

from __future__ import annotations

import peewee

from octo_appliance.db.migrations.ddl import ID, execute, foreign_key, index, table

VERSION = 2

STATEMENTS: tuple[str, ...] = (
    table(
        "server_task",
        ID,
        '"kind" VARCHAR(60) NOT NULL',
        '"description" TEXT NOT NULL',
        '"state" VARCHAR(20) NOT NULL',
        '"arguments" TEXT NOT NULL',
        '"sealed_arguments" TEXT',
        '"created_by_id" VARCHAR(40)',
        '"created_by_name" VARCHAR(100) NOT NULL',
        '"created_at" {DATETIME} NOT NULL',
        '"started_at" {DATETIME}',
        '"finished_at" {DATETIME}',
        '"node" VARCHAR(200) NOT NULL',
        '"cancel_requested" {BOOLEAN} NOT NULL',
        '"canceled_by" VARCHAR(100) NOT NULL',
        '"error" TEXT NOT NULL',
        '"timeout_seconds" INTEGER',
        '"not_before" {DATETIME}',
        '"environment_id" VARCHAR(40)',
        '"project_id" VARCHAR(40)',
        '"summary" TEXT NOT NULL',
    ),
    index("server_task", "kind"),
    index("server_task", "environment_id"),
    index("server_task", "project_id"),
    index("server_task", "state", "created_at"),
    table(
        "task_target_result",
        ID,
        '"task_id" VARCHAR(40) NOT NULL',
        '"target_id" VARCHAR(40) NOT NULL',
        '"target_name" VARCHAR(200) NOT NULL',
        '"state" VARCHAR(20) NOT NULL',
        '"exit_code" INTEGER',
        '"started_at" {DATETIME}',
        '"finished_at" {DATETIME}',
        '"output_variables" TEXT NOT NULL',
        '"sealed_output_variables" TEXT',
        '"message" TEXT NOT NULL',
        foreign_key("task_id", "server_task"),
    ),
    # (no index on task_id alone: the unique one below starts with it)
    index("task_target_result", "task_id", "target_id", unique=True),
    table(
        "task_log_line",
        ID,
        '"task_id" VARCHAR(40) NOT NULL',
        '"seq" INTEGER NOT NULL',
        '"level" VARCHAR(20) NOT NULL',
        '"occurred_at" {DATETIME} NOT NULL',
        '"target_id" VARCHAR(40)',
        '"target_name" VARCHAR(200)',
        '"message" TEXT NOT NULL',
        foreign_key("task_id", "server_task"),
    ),
    index("task_log_line", "task_id", "seq", unique=True),
)


def apply(db: peewee.Database) -> None:
    execute(db, STATEMENTS)
