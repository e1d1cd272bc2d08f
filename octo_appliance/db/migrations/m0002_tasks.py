"""Schema version 2: server tasks, their per-target results and their sealed log."""

from __future__ import annotations

import peewee

VERSION = 2


def apply(db: peewee.Database) -> None:
    from octo_appliance.db.tasks import TASK_MODELS

    db.create_tables(TASK_MODELS, safe=True)
