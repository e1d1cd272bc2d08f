"""Schema version 8: registration tokens, which may only register targets (the one-line
install carries one instead of an API key). Frozen (see :mod:`.ddl`)."""

from __future__ import annotations

import peewee

from octo_appliance.db.migrations.ddl import ID, execute, foreign_key, index, table

VERSION = 8

STATEMENTS: tuple[str, ...] = (
    table(
        "registration_token",
        ID,
        '"user_id" VARCHAR(40) NOT NULL',
        '"name" VARCHAR(200) NOT NULL',
        '"token_hash" VARCHAR(64) NOT NULL',
        '"prefix" VARCHAR(16) NOT NULL',
        '"environments" TEXT NOT NULL',
        '"roles" TEXT NOT NULL',
        '"mode" VARCHAR(20) NOT NULL',
        '"max_uses" INTEGER NOT NULL',
        '"uses" INTEGER NOT NULL',
        '"created_at" {DATETIME} NOT NULL',
        '"expires_at" {DATETIME} NOT NULL',
        '"last_used" {DATETIME}',
        foreign_key("user_id", "user"),
    ),
    index("registration_token", "user_id"),
    index("registration_token", "token_hash", unique=True),
)


def apply(db: peewee.Database) -> None:
    execute(db, STATEMENTS)
