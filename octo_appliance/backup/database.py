"""The database half of a backup: a consistent snapshot while the server runs, and its restore.

SQLite: the online backup API (one read transaction, so the copy is one consistent instant even
while the server writes; WAL readers never block the writer). PostgreSQL: ``pg_dump`` in its
custom format (one snapshot transaction) and ``pg_restore`` into an empty database. Both tools
get the password through ``PGPASSWORD``, never through argv. ``pg_dump`` refuses a server of a
newer major version than itself: we report that with what to install instead of working around
it (a logical dump by another route would not be the one PostgreSQL operators can inspect and
restore by hand).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import urlparse

from octo_appliance.db import SEALED_COLUMNS
from octo_appliance.db.connection import SQLITE_FILE_NAME, _redact
from octo_appliance.db.in_use import connect_session
from octo_appliance.db.nodes import ALIVE, STOPPED, Node
from octo_appliance.db.schema import SchemaVersion
from octo_appliance.exceptions import ConfigError, DatabaseError
from octo_appliance.vault.values import FORMAT

SQLITE_MEMBER = "database/octo.db"
POSTGRES_MEMBER = "database/postgresql.dump"
#: ``v1.`` + 16 hex digits of key id + ``.``: the clear prefix of every sealed value
_TOKEN_PREFIX_CHARS = len(FORMAT) + 1 + 16 + 1

Execute = Callable[[str], Iterable[tuple[Any, ...]]]


def is_postgres(url: str | None) -> TypeGuard[str]:
    return url is not None and url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str | None, data_dir: Path) -> Path:
    """The SQLite file the settings name (the same rule as ``db.connection``)."""
    if url and url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    if url and not url.startswith("sqlite"):
        raise ConfigError(
            f"unsupported database URL for a backup: {_redact(url)}",
            hint="leave it empty for SQLite, or use postgresql://USER@HOST:PORT/DB",
        )
    return data_dir / SQLITE_FILE_NAME


# -- what the data was sealed with ----------------------------------------------------------------


def sealed_key_ids(execute: Execute) -> set[str]:
    """The master-key ids every sealed column value names, read from the clear token prefix."""
    found: set[str] = set()
    for model, column in SEALED_COLUMNS:
        table = model._meta.table_name
        name = getattr(model, column).column_name
        sql = (
            f'SELECT DISTINCT substr("{name}", 1, {_TOKEN_PREFIX_CHARS}) FROM "{table}" '
            f'WHERE "{name}" IS NOT NULL'
        )
        for (prefix,) in execute(sql):
            parts = str(prefix).split(".")
            if len(parts) >= 2 and parts[0] == FORMAT and parts[1]:
                found.add(parts[1])
    return found


def schema_version(execute: Execute) -> int:
    rows = list(execute(f'SELECT MAX(version) FROM "{SchemaVersion._meta.table_name}"'))
    return int(rows[0][0] or 0) if rows else 0


# -- SQLite ---------------------------------------------------------------------------------------


def snapshot_sqlite(source: Path, dest: Path) -> tuple[set[str], int]:
    """Copy the live database to ``dest``; returns its key ids and schema version."""
    if not source.is_file():
        raise DatabaseError(
            f"no database at {source}",
            hint="pass the --data-dir (and --database) the server uses",
        )
    live = sqlite3.connect(str(source), timeout=30)
    try:
        copy = sqlite3.connect(str(dest))
        try:
            live.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            return _facts(lambda sql: copy.execute(sql).fetchall())
        finally:
            copy.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(
            f"cannot read the database {source}: {exc}",
            hint="check that it is the appliance's database and that this user may read it",
        ) from None
    finally:
        live.close()


def check_sqlite_snapshot(path: Path) -> None:
    """A restored file must be a readable SQLite database with the appliance's schema."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()
            version = schema_version(lambda sql: conn.execute(sql).fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(
            f"the backup's database does not open: {exc}", hint="use another backup file"
        ) from None
    if not ok or ok[0] != "ok" or version == 0:
        raise DatabaseError("the backup's database is damaged", hint="use another backup file")


def _facts(execute: Execute) -> tuple[set[str], int]:
    return sealed_key_ids(execute), schema_version(execute)


# -- PostgreSQL -----------------------------------------------------------------------------------


def _client_args(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password (for argv) and an environment carrying the password."""
    url = url.replace("postgres://", "postgresql://", 1)
    parsed = urlparse(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
        netloc = parsed.netloc.replace(f":{parsed.password}@", "@")
        url = parsed._replace(netloc=netloc).geturl()
    return url, env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DatabaseError(
            f"{name} is not installed",
            hint="install the PostgreSQL client tools of the server's major version or newer "
            "(Debian: apt-get install postgresql-client)",
        )
    return path


def _run_tool(name: str, args: list[str], url: str) -> None:
    bare, env = _client_args(url)
    done = subprocess.run(
        [_tool(name), *args, f"--dbname={bare}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        first = lines[0] if lines else f"exit code {done.returncode}"
        hint = "check the database URL and that the PostgreSQL server runs"
        if "version mismatch" in done.stderr:
            hint = (
                f"{name} is older than the server: install the client tools of the server's "
                "major version (or newer) and run the command again"
            )
        raise DatabaseError(f"{name} failed: {first}", hint=hint)


def dump_postgres(url: str, dest: Path) -> tuple[set[str], int]:
    """``pg_dump`` the database to ``dest``; returns its key ids and schema version.

    The ids are read from the live database after the dump: no rotation can run meanwhile
    (the backup holds the in-use lock), so they are the ones the dump holds.
    """
    with connect_session(url) as conn:
        if schema_version_or_zero(conn) == 0:
            raise DatabaseError(
                "the database holds no appliance schema",
                hint="pass the --database the server uses (see config.toml or OCTO_DATABASE)",
            )
        _run_tool(
            "pg_dump", ["--format=custom", "--no-owner", "--no-privileges", "-f", str(dest)], url
        )
        return _facts(lambda sql: conn.execute(sql).fetchall())


def schema_version_or_zero(conn: Any) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = %s",
        (SchemaVersion._meta.table_name,),
    ).fetchone()
    if not row or not row[0]:
        return 0
    return schema_version(lambda sql: conn.execute(sql).fetchall())


def check_postgres_empty(url: str) -> None:
    with connect_session(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
    if row and row[0]:
        raise DatabaseError(
            f"the database {_redact(url)} is not empty ({row[0]} tables)",
            hint="restore into a new, empty database (createdb NAME), never over one in use",
        )


def restore_postgres(url: str, dump: Path) -> None:
    """``pg_restore`` the dump into the (empty) database, all or nothing."""
    args = ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", str(dump)]
    _run_tool("pg_restore", args, url)


def forget_live_nodes(url: str) -> None:
    """After a restore no node runs on the database: mark the nodes an online backup caught
    alive as stopped, so the first start under a name is not refused as a live twin
    (docs/ha.md). A dump from before the node registry has no such table."""
    with connect_session(url) as conn:
        exists = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = %s",
            (Node._meta.table_name,),
        ).fetchone()
        if exists and exists[0]:
            conn.execute(
                f'UPDATE "{Node._meta.table_name}" SET state = %s, reason = %s WHERE state = %s',
                (STOPPED, "restored from a backup", ALIVE),
            )
