"""Schema version 5: the built-in package feed (packages, and the versions releases use).
Frozen (see :mod:`.ddl`)."""

from __future__ import annotations

import peewee

from octo_appliance.db.migrations.ddl import ID, execute, foreign_key, index, table

VERSION = 5

STATEMENTS: tuple[str, ...] = (
    table(
        "package",
        ID,
        '"package_id" VARCHAR(200) NOT NULL',
        '"version" VARCHAR(100) NOT NULL',
        '"format" VARCHAR(16) NOT NULL',
        '"sha256" VARCHAR(64) NOT NULL',
        '"size" {BIGINT} NOT NULL',
        '"file_name" VARCHAR(300) NOT NULL',
        '"uploaded_at" {DATETIME} NOT NULL',
        '"uploaded_by" VARCHAR(100) NOT NULL',
    ),
    index("package", "sha256"),
    index("package", "package_id", "version", unique=True),
    table(
        "release_package",
        ID,
        '"release_id" VARCHAR(40) NOT NULL',
        '"step" VARCHAR(200) NOT NULL',
        '"package_id" VARCHAR(200) NOT NULL',
        '"version" VARCHAR(100) NOT NULL',
        '"sha256" VARCHAR(64) NOT NULL',
        foreign_key("release_id", "release"),
    ),
    index("release_package", "release_id"),
    index("release_package", "package_id", "version"),
)


def apply(db: peewee.Database) -> None:
    execute(db, STATEMENTS)
