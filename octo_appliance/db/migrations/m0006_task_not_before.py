"""Schema version 6: tasks carry the time before which they are not claimed (``not_before``).

Deployments scheduled ahead used to be claimed at once and wait inside the engine, holding a
slot of the task cap. Queued ones written by an older version keep their time in the task's
arguments: it is copied into the column, so they wait ``queued`` too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import peewee
from playhouse.migrate import SchemaMigrator, migrate

VERSION = 6


def apply(db: peewee.Database) -> None:
    from octo_appliance.db.tasks import QUEUED, ServerTask

    # m0002 creates the table from the current model, so a fresh database has the column.
    columns = {column.name for column in db.get_columns(ServerTask._meta.table_name)}
    if "not_before" not in columns:
        migrator = SchemaMigrator.from_database(db)
        column = peewee.DateTimeField(null=True)
        migrate(migrator.add_column(ServerTask._meta.table_name, "not_before", column))
    rows = ServerTask.select(ServerTask.id, ServerTask.arguments).where(
        (ServerTask.state == QUEUED) & ServerTask.not_before.is_null()
    )
    for row in rows:
        arguments = row.arguments or {}
        moment = _parse(arguments.get("not_before") or arguments.get("queue_time"))
        if moment is not None:
            ServerTask.update(not_before=moment).where(ServerTask.id == row.id).execute()


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
