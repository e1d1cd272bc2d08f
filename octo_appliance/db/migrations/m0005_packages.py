"""Schema version 5: the built-in package feed (packages, and the versions releases use)."""

from __future__ import annotations

import peewee

VERSION = 5


def apply(db: peewee.Database) -> None:
    from octo_appliance.db.packages import PACKAGE_MODELS

    db.create_tables(PACKAGE_MODELS, safe=True)
