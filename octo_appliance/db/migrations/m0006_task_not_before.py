"""Schema version 6: tasks carry the time before which they are not claimed (``not_before``).

Deployments scheduled ahead used to be claimed at once and wait inside the engine, holding a
slot of the task cap. Queued ones written by an older version keep their time in the task's
arguments: it is copied into the column, so they wait ``queued`` too.

Migration 2 creates the column since this version exists; only databases made before it gain
the column here. The copy reads and writes through :class:`_Task`, this migration's own frozen
view of the table (never the current model, which may have changed since).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import peewee

from octo_appliance.db.migrations.ddl import columns, execute

VERSION = 6

ADD_COLUMN = 'ALTER TABLE "server_task" ADD COLUMN "not_before" {DATETIME}'


class _Task(peewee.Model):
    """The columns of ``server_task`` this migration reads and writes, as they were."""

    id = peewee.CharField(primary_key=True, max_length=40)
    state = peewee.CharField(max_length=20)
    arguments = peewee.TextField()
    not_before = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "server_task"


def apply(db: peewee.Database) -> None:
    if "not_before" not in columns(db, "server_task"):
        execute(db, [ADD_COLUMN])
    with db.bind_ctx([_Task]):
        rows = _Task.select(_Task.id, _Task.arguments).where(
            (_Task.state == "queued") & _Task.not_before.is_null()
        )
        for row in rows:
            arguments = json.loads(row.arguments) if row.arguments else {}
            if not isinstance(arguments, dict):
                continue
            moment = _parse(arguments.get("not_before") or arguments.get("queue_time"))
            if moment is not None:
                _Task.update(not_before=moment).where(_Task.id == row.id).execute()


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
