"""Schema version 1: infrastructure, projects, security and audit tables."""

from __future__ import annotations

import peewee

VERSION = 1


def apply(db: peewee.Database) -> None:
    from octo_appliance.db import MODELS

    db.create_tables(MODELS, safe=True)
