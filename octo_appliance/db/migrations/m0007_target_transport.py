"""Schema version 7: targets carry their transport's settings and sealed credentials.

An SSH target (docs/ssh-targets.md) keeps its non-secret settings (``directory``,
``trust_on_first_use``) as JSON in ``transport_settings`` and its private key, passphrase or
password sealed by the vault in ``sealed_credentials``. Both are NULL for a target that has
none (every agent target), so adding them needs no default and no table rebuild.
"""

from __future__ import annotations

import peewee

from octo_appliance.db.migrations.ddl import columns, execute

VERSION = 7

ADD_SETTINGS = 'ALTER TABLE "target" ADD COLUMN "transport_settings" TEXT'
ADD_CREDENTIALS = 'ALTER TABLE "target" ADD COLUMN "sealed_credentials" TEXT'


def apply(db: peewee.Database) -> None:
    present = columns(db, "target")
    statements = []
    if "transport_settings" not in present:
        statements.append(ADD_SETTINGS)
    if "sealed_credentials" not in present:
        statements.append(ADD_CREDENTIALS)
    if statements:
        execute(db, statements)
