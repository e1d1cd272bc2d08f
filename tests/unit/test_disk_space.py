"""A full disk is recognised however it surfaces (a file write, SQLite, PostgreSQL, wrapped
by peewee) and becomes a 507 naming where space is missing and how much is free."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import peewee
import psycopg.errors
import pytest

from octo_appliance.filesystem.disk_space import disk_full_kind, format_bytes, storage_error


def sqlite_full(tmp_path: Path) -> peewee.OperationalError:
    """A real SQLITE_FULL from a database capped at a few pages, wrapped as peewee wraps it."""
    db = peewee.SqliteDatabase(str(tmp_path / "small.db"))
    db.execute_sql("PRAGMA max_page_count = 4")
    db.execute_sql("CREATE TABLE t (x TEXT)")
    with pytest.raises(peewee.OperationalError) as caught:
        for _ in range(100):
            db.execute_sql("INSERT INTO t VALUES (?)", ("x" * 4000,))
    db.close()
    return caught.value


def test_every_form_of_a_full_disk_is_recognised(tmp_path):
    wrapped = sqlite_full(tmp_path)
    assert "database or disk is full" in str(wrapped)
    assert isinstance(wrapped.__context__, sqlite3.OperationalError)  # peewee re-raised it
    assert disk_full_kind(wrapped) == "disk"
    assert disk_full_kind(OSError(errno.ENOSPC, "No space left on device")) == "disk"
    assert disk_full_kind(OSError(errno.EDQUOT, "Disk quota exceeded")) == "disk"
    postgres = psycopg.errors.DiskFull("could not extend file")
    assert disk_full_kind(peewee.OperationalError(postgres, *postgres.args)) == "database server"
    assert disk_full_kind(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_kind(peewee.OperationalError("database is locked")) is None


def test_the_507_names_the_data_dir_and_its_free_space(tmp_path):
    error = storage_error(OSError(errno.ENOSPC, "full"), tmp_path, "storing the package")
    assert error is not None and error.status_code == 507
    assert error.message.startswith(
        f"no space left on the disk of the data dir {tmp_path} while storing the package ("
    )
    assert error.message.endswith(" free)") and error.hint
    assert storage_error(ValueError("x"), tmp_path, "writing") is None


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1536, "1.5 KiB"),
        (5 * 2**20, "5.0 MiB"),
        (2**40, "1.0 TiB"),
    ],
)
def test_sizes_read_as_people_write_them(size, text):
    assert format_bytes(size) == text
