"""The schema-version table."""

from __future__ import annotations

import peewee

from octo_appliance.db.base import database_proxy, utcnow


class SchemaVersion(peewee.Model):
    version = peewee.IntegerField(primary_key=True)
    applied_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        database = database_proxy
        table_name = "schema_version"
