"""The model base class, the database proxy and resource ids.

Ids are random and prefixed by kind (``env_3f9a1c2b7d4e``) so they are known before a row is
written (sealed values bind their row id) and so a pasted id says what it names.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

import peewee

database_proxy = peewee.DatabaseProxy()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(moment: datetime | None) -> str | None:
    """Datetimes are stored naive UTC; the API shows them as ISO 8601 with ``Z``."""
    if moment is None:
        return None
    return moment.replace(microsecond=moment.microsecond).isoformat(timespec="milliseconds") + "Z"


def tuples(query: Any) -> list[tuple[Any, ...]]:
    """Rows as plain tuples (the peewee stubs type ``.tuples()`` as model instances)."""
    return list(query.tuples())


def fk_id(row: Any, field: str) -> Any:
    """The raw id a foreign key column holds (``row.<field>_id``, untyped in the stubs)."""
    return row.__data__.get(field)


class JSONField(peewee.TextField):
    """JSON stored as text, so SQLite and PostgreSQL behave the same."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    """Every table: string primary key ``id`` with a kind prefix."""

    id_prefix: str = "obj"

    id = peewee.CharField(primary_key=True, max_length=40)

    class Meta:
        database = database_proxy
        legacy_table_names = False

    @classmethod
    def create_new(cls, **fields: Any) -> Any:
        fields.setdefault("id", new_id(cls.id_prefix))
        return cls.create(**fields)

    def save_changes(self, changes: dict[str, Any]) -> None:
        """Set the given columns and save: a partial update (PUT with fields left out)."""
        for key, value in changes.items():
            setattr(self, key, value)
        self.save()

    def aad(self, column: str) -> bytes:
        """Associated data binding a sealed value to this row and column."""
        return f"{self._meta.table_name}/{self.id}/{column}".encode()
