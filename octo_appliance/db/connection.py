"""Open the database named by the settings: SQLite (WAL) in the data dir, or PostgreSQL.

PostgreSQL connections re-open themselves after the server went away
(:mod:`octo_appliance.db.reconnect`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import peewee

from octo_appliance.db.base import database_proxy
from octo_appliance.db.reconnect import DEFAULT_CONNECT_TIMEOUT, ReconnectingPostgresqlDatabase
from octo_appliance.exceptions import ConfigError, DatabaseError, DatabaseUnavailable

SQLITE_FILE_NAME = "octo.db"
#: KiB of SQLite page cache per connection. Each thread that touches the database keeps a
#: connection of its own (peewee). 2 MiB (SQLite's default) cut the appliance's RSS at 5,000
#: agents a little but made log-heavy tasks ~35% slower (tests/engine/test_chatty_output.py
#: 38 -> 51 s): back to 16 MiB, the RSS at 5,000 stays far below its goal (issue 14).
SQLITE_CACHE_KIB = 16000


def open_database(
    url: str | None, data_dir: Path, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
) -> peewee.Database:
    """Build, connect and bind the database; the caller runs migrations."""
    if not url or url.startswith("sqlite"):
        path = data_dir / SQLITE_FILE_NAME
        if url and url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        db: peewee.Database = peewee.SqliteDatabase(
            str(path),
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "synchronous": "normal",
                "busy_timeout": 10000,
                "cache_size": -SQLITE_CACHE_KIB,
            },
            check_same_thread=False,
        )
    elif url.startswith(("postgresql://", "postgres://")):
        parsed = urlparse(url)
        if not parsed.path.strip("/"):
            raise ConfigError(
                f"database URL '{_redact(url)}' names no database",
                hint="write it like postgresql://USER@127.0.0.1:5432/DB",
            )
        db = ReconnectingPostgresqlDatabase(
            url.replace("postgres://", "postgresql://", 1), connect_timeout=connect_timeout
        )
    else:
        raise ConfigError(
            f"unsupported database URL '{_redact(url)}'",
            hint="leave it empty for SQLite, or use postgresql://USER@HOST:PORT/DB",
        )
    try:
        db.connect(reuse_if_open=True)
    except (peewee.OperationalError, DatabaseUnavailable) as exc:
        # the driver's words say what is wrong
        cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) and exc.__cause__ else exc
        raise DatabaseError(
            f"cannot open the database {_redact(url or str(data_dir / SQLITE_FILE_NAME))}: "
            f"{str(cause).strip().splitlines()[0] if str(cause).strip() else cause!r}",
            hint="check the URL, that the server runs, and that the user may connect",
        ) from None
    database_proxy.initialize(db)
    return db


def describe_database(db: peewee.Database, url: str | None) -> str:
    """``SQLite <path>`` or ``PostgreSQL <url without password>``."""
    if isinstance(db, peewee.SqliteDatabase):
        return f"SQLite {db.database}"
    parsed = urlparse(url or "")
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc = f"{netloc}:{parsed.port}"
    if parsed.username:
        netloc = f"{parsed.username}@{netloc}"
    return f"PostgreSQL {parsed._replace(netloc=netloc, query='').geturl()}"


def _redact(url: str) -> str:
    """Drop a password from a URL before it reaches a message or a log."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return url


@contextmanager
def write_transaction(db: peewee.Database) -> Iterator[None]:
    """A transaction that may read before it writes, safe under concurrent writers.

    On SQLite it starts with ``BEGIN IMMEDIATE``: a deferred transaction that reads first fails
    at once with "database is locked" (no busy wait) when another connection wrote in between.
    Nested uses are savepoints of the outer transaction.
    """
    if isinstance(db, peewee.SqliteDatabase) and db.transaction_depth() == 0:
        with db.atomic("IMMEDIATE"):
            yield
    else:
        with db.atomic():
            yield
