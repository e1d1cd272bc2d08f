"""The lock that says "a server uses this data dir and database", which a rotation must not.

A running server keeps sealing with the key ring it loaded at start, so a master-key rotation
(or a restore) beside it would leave values and log lines under a retired key. One scheme,
two places, because a data dir is per machine and a PostgreSQL database is shared by nodes:

- ``<data dir>/appliance.lock``, an ``flock``: ``serve`` holds it *shared* for its lifetime
  (``backup`` too, while it runs), ``master-key rotate`` and ``restore`` take it *exclusive*
  without waiting.
- On PostgreSQL also a session-level advisory lock (:data:`ADVISORY_KEY`) on a connection of
  its own: every node holds it shared; a rotation takes it exclusive, so a node on another
  machine is seen too. A keeper thread re-takes it if the connection is lost (a database
  restart drops session locks).

The kernel drops the file lock and PostgreSQL the advisory lock when the process or its
connection ends, even on ``kill -9``: nothing stale to clean by hand. docs/operations.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from octo_appliance.db.connection import _redact
from octo_appliance.exceptions import DatabaseError, InUseError

LOCK_FILE_NAME = "appliance.lock"
#: A fixed 64-bit key in PostgreSQL's advisory-lock space (per database).
ADVISORY_KEY = int.from_bytes(
    hashlib.sha256(b"octo-appliance/in-use").digest()[:8], "big", signed=True
)
KEEPER_SECONDS = 5.0

log = logging.getLogger("octo_appliance.in_use")


def _is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def connect_session(url: str) -> Any:
    """A psycopg connection of its own (autocommit), outside peewee: a session-level lock
    lives exactly as long as it. Errors say what to check, with any password redacted."""
    import psycopg

    try:
        return psycopg.connect(
            url.replace("postgres://", "postgresql://", 1), autocommit=True, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        lines = str(exc).strip().splitlines()
        raise DatabaseError(
            f"cannot open the database {_redact(url)}: {lines[0] if lines else exc!r}",
            hint="check the URL, that the server runs, and that the user may connect",
        ) from None


class InUseLock:
    """The file lock (and on PostgreSQL the advisory lock) one process holds; see the module."""

    def __init__(self, data_dir: Path, database: str | None, *, exclusive: bool) -> None:
        self.data_dir = data_dir
        self.database = database if _is_postgres(database) else None
        self.exclusive = exclusive
        self._fd: int | None = None
        self._conn: Any = None
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    # -- taking --------------------------------------------------------------------------------

    def acquire(self, refused: InUseError) -> InUseLock:
        """Take both locks without waiting, or raise ``refused`` (nothing stays held)."""
        try:
            self._lock_file(refused)
            if self.database is not None:
                self._conn = connect_session(self.database)
                if not self._try_advisory(self._conn):
                    raise refused
        except BaseException:
            self.release()
            raise
        if self.database is not None and not self.exclusive:
            self._keeper = threading.Thread(target=self._keep, name="octo-in-use-lock", daemon=True)
            self._keeper.start()
        return self

    def _lock_file(self, refused: InUseError) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.data_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(self._fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise refused from None

    def _try_advisory(self, conn: Any) -> bool:
        function = "pg_try_advisory_lock" if self.exclusive else "pg_try_advisory_lock_shared"
        row = conn.execute(f"SELECT {function}(%s)", (ADVISORY_KEY,)).fetchone()
        return bool(row and row[0])

    def _keep(self) -> None:
        """A server's advisory lock outlives database restarts: re-take it when it is lost."""
        while not self._stop.wait(KEEPER_SECONDS):
            if self._alive():
                continue
            with contextlib.suppress(Exception):
                self._conn.close()
            try:
                self._conn = connect_session(str(self.database))
                held = self._try_advisory(self._conn)
            except Exception as exc:  # the database is still down: try again later
                log.debug("in-use lock: the database is unreachable (%s)", type(exc).__name__)
                continue
            if not held:
                log.error(
                    "a master-key rotation holds the database while this server runs: "
                    "stop this server and let the rotation finish"
                )

    def _alive(self) -> bool:
        try:
            self._conn.execute("SELECT 1")
        except Exception:  # any failure: the session, and the lock with it, is gone
            return False
        return True

    # -- releasing -----------------------------------------------------------------------------

    def release(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=KEEPER_SECONDS + 1)
            self._keeper = None
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a dead connection
                self._conn.close()
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> InUseLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def hold_for_server(data_dir: Path, database: str | None) -> InUseLock:
    """``serve``: hold the shared lock for the process lifetime (released by the kernel)."""
    return hold_shared(data_dir, database, then="start the server")


def hold_shared(data_dir: Path, database: str | None, *, then: str) -> InUseLock:
    """``serve`` (for its lifetime) and ``backup``: side by side, never beside a rotation."""
    refused = InUseError(
        f"a master-key rotation or a restore is working on {data_dir}"
        + (" or its database" if _is_postgres(database) else ""),
        hint="wait for it to finish (or run 'master-key rotate' again to finish an interrupted "
        f"one), then {then} again",
    )
    return InUseLock(data_dir, database, exclusive=False).acquire(refused)


def hold_exclusive(data_dir: Path, database: str | None, *, command: str) -> InUseLock:
    """``master-key rotate`` / ``restore``: no server (on any node) may use the data."""
    where = f"the data dir {data_dir}"
    if _is_postgres(database):
        where += " or its PostgreSQL database (on any node)"
    refused = InUseError(
        f"a server is running on {where} (or another rotation or restore is)",
        hint=f"stop the server (every node that shares the database), then run '{command}' "
        "again: it cannot run while a server uses the data",
    )
    return InUseLock(data_dir, database, exclusive=True).acquire(refused)
