"""Schema version 1: infrastructure, projects, security and audit tables.

Frozen: the tables as the first release created them (see :mod:`.ddl`). Version-1 databases
made before ``target.certificate`` existed lack that column; migration 3 adds it.
"""

from __future__ import annotations

import peewee

from octo_appliance.db.migrations.ddl import ID, execute, foreign_key, index, table

VERSION = 1

STATEMENTS: tuple[str, ...] = (
    table(
        "environment",
        ID,
        '"name" VARCHAR(200) NOT NULL',
        '"description" TEXT NOT NULL',
        '"sort_order" INTEGER NOT NULL',
        '"created_at" {DATETIME} NOT NULL',
    ),
    index("environment", "name", unique=True),
    table(
        "target",
        ID,
        '"name" VARCHAR(200) NOT NULL',
        '"communication_style" VARCHAR(40) NOT NULL',
        '"uri" VARCHAR(500) NOT NULL',
        '"thumbprint" VARCHAR(64) NOT NULL',
        '"certificate" TEXT NOT NULL',
        '"disabled" {BOOLEAN} NOT NULL',
        '"health_status" VARCHAR(40) NOT NULL',
        '"agent_version" VARCHAR(40) NOT NULL',
        '"last_seen" {DATETIME}',
        '"created_at" {DATETIME} NOT NULL',
    ),
    index("target", "name", unique=True),
    table(
        "target_environment",
        ID,
        '"target_id" VARCHAR(40) NOT NULL',
        '"environment_id" VARCHAR(40) NOT NULL',
        foreign_key("target_id", "target"),
        foreign_key("environment_id", "environment"),
    ),
    index("target_environment", "target_id"),
    index("target_environment", "environment_id"),
    index("target_environment", "target_id", "environment_id", unique=True),
    table(
        "target_role",
        ID,
        '"target_id" VARCHAR(40) NOT NULL',
        '"role" VARCHAR(100) NOT NULL',
        foreign_key("target_id", "target"),
    ),
    index("target_role", "target_id"),
    index("target_role", "role"),
    index("target_role", "target_id", "role", unique=True),
    table(
        "project",
        ID,
        '"name" VARCHAR(200) NOT NULL',
        '"description" TEXT NOT NULL',
        '"created_at" {DATETIME} NOT NULL',
    ),
    index("project", "name", unique=True),
    table(
        "variable",
        ID,
        '"project_id" VARCHAR(40) NOT NULL',
        '"name" VARCHAR(300) NOT NULL',
        '"sensitive" {BOOLEAN} NOT NULL',
        '"value" TEXT',
        '"sealed_value" TEXT',
        '"scope" TEXT NOT NULL',
        '"position" INTEGER NOT NULL',
        foreign_key("project_id", "project"),
    ),
    index("variable", "project_id"),
    table(
        "user",
        ID,
        '"username" VARCHAR(100) NOT NULL',
        '"display_name" VARCHAR(200) NOT NULL',
        '"email" VARCHAR(300) NOT NULL',
        '"password_hash" VARCHAR(300) NOT NULL',
        '"is_active" {BOOLEAN} NOT NULL',
        '"created_at" {DATETIME} NOT NULL',
    ),
    index("user", "username", unique=True),
    table(
        "team",
        ID,
        '"name" VARCHAR(200) NOT NULL',
        '"description" TEXT NOT NULL',
        '"created_at" {DATETIME} NOT NULL',
    ),
    index("team", "name", unique=True),
    table(
        "team_member",
        ID,
        '"team_id" VARCHAR(40) NOT NULL',
        '"user_id" VARCHAR(40) NOT NULL',
        foreign_key("team_id", "team"),
        foreign_key("user_id", "user"),
    ),
    index("team_member", "team_id"),
    index("team_member", "user_id"),
    index("team_member", "team_id", "user_id", unique=True),
    table(
        "team_role",
        ID,
        '"team_id" VARCHAR(40) NOT NULL',
        '"role" VARCHAR(60) NOT NULL',
        '"environments" TEXT NOT NULL',
        '"projects" TEXT NOT NULL',
        foreign_key("team_id", "team"),
    ),
    index("team_role", "team_id"),
    table(
        "api_key",
        ID,
        '"user_id" VARCHAR(40) NOT NULL',
        '"name" VARCHAR(200) NOT NULL',
        '"key_hash" VARCHAR(64) NOT NULL',
        '"prefix" VARCHAR(16) NOT NULL',
        '"created_at" {DATETIME} NOT NULL',
        '"last_used" {DATETIME}',
        foreign_key("user_id", "user"),
    ),
    index("api_key", "user_id"),
    index("api_key", "key_hash", unique=True),
    table(
        "login_session",
        ID,
        '"user_id" VARCHAR(40) NOT NULL',
        '"token_hash" VARCHAR(64) NOT NULL',
        '"csrf_hash" VARCHAR(64) NOT NULL',
        '"created_at" {DATETIME} NOT NULL',
        '"expires_at" {DATETIME} NOT NULL',
        foreign_key("user_id", "user"),
    ),
    index("login_session", "user_id"),
    index("login_session", "token_hash", unique=True),
    table(
        "audit_event",
        ID,
        '"occurred_at" {DATETIME} NOT NULL',
        '"user_id" VARCHAR(40)',
        '"username" VARCHAR(100) NOT NULL',
        '"action" VARCHAR(40) NOT NULL',
        '"resource_type" VARCHAR(60) NOT NULL',
        '"resource_id" VARCHAR(40)',
        '"resource_name" VARCHAR(300) NOT NULL',
        '"details" TEXT NOT NULL',
    ),
    index("audit_event", "occurred_at"),
    index("audit_event", "user_id"),
    index("audit_event", "resource_type"),
    index("audit_event", "resource_id"),
)


def apply(db: peewee.Database) -> None:
    execute(db, STATEMENTS)
