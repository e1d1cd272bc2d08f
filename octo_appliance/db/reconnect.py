"""PostgreSQL connections that come back after the server went away.

peewee keeps one connection per thread and never re-opens it: once PostgreSQL restarted or
terminated the backend, every later statement of that thread fails with "the connection is
closed". :class:`ReconnectingPostgresqlDatabase` checks the thread's connection at the start of
each unit of work (a ``BEGIN``, or a statement outside a transaction) and opens a new one when
the old one is dead: closed by the driver, or its socket readable while idle (the server sends
its "terminating connection" error and closes when it ends a backend; nothing else arrives on
an idle connection here, the appliance does not ``LISTEN``). The check is a ``poll()`` on the
socket, no round trip.

A connection can still die in the middle of work. Then only what is safe is done again:

- a ``BEGIN`` or a ``SELECT`` outside a transaction runs once more on a new connection (nothing
  was written);
- a statement inside a transaction, a commit or a write outside one is never repeated: the
  caller gets :class:`~octo_appliance.exceptions.DatabaseUnavailable` (``outcome_unknown``
  when the write may have been stored) and decides.

Connecting is bounded by ``connect_timeout`` and TCP keepalives find a peer that vanished
without closing, so nothing waits forever on a dead server. :class:`DatabaseStatus` logs an
outage once when it starts and once when it ends, and tells the health endpoint.

Why not ``playhouse.pool``: its health check runs when a connection is checked out, and this
appliance's threads (the API's workers, the engine's, ``asyncio.to_thread``) keep theirs for
life, so the check would have to run per unit of work anyway.
"""

from __future__ import annotations

import logging
import select
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import peewee

from octo_appliance.exceptions import DatabaseUnavailable

log = logging.getLogger("octo_appliance.db")

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 5
#: TCP keepalives: a server that vanished without closing is noticed after about 15 s idle
KEEPALIVE_PARAMS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,
}
UNAVAILABLE = "the database is unavailable (the connection was lost or the server does not answer)"
RETRY_HINT = "the appliance reconnects by itself when the database is back; retry in a few seconds"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DatabaseStatus:
    """Whether the database answered last time, and since when it does not (thread-safe).

    Logs an error once when an outage starts and a warning once when it ends, however many
    statements fail in between: the engine's passes and every request would otherwise log each
    failure.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: ``time.time()`` of the first failure of the current outage; None while up
        self.down_since: float | None = None
        self._last_ok = 0.0

    @property
    def up(self) -> bool:
        return self.down_since is None

    def seconds_since_ok(self) -> float:
        return time.monotonic() - self._last_ok

    def ok(self) -> None:
        self._last_ok = time.monotonic()
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            lasted = time.time() - self.down_since
            self.down_since = None
        log.warning("the database is reachable again (it was unavailable for %.0f s)", lasted)

    def failed(self, reason: str) -> None:
        with self._lock:
            if self.down_since is not None:
                return
            if not self._last_ok:  # never up: opening the database fails, and says so
                return
            self.down_since = time.time()
        log.error(
            "the database is unavailable: %s; API requests that need it answer 503 and the "
            "task engine retries until it is back",
            reason,
        )


def _readable(fd: int) -> bool:
    """True when something waits on an idle connection's socket (or it is at EOF)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def _thread_state(db: Any) -> Any:
    """peewee's per-thread connection state (not in its type stubs)."""
    return db._state


class _ThreadToken:
    """Lives as long as one thread's connection state (see ``_connect``)."""


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # closing is all we want; a broken one is closed too
        log.debug("closing a database connection failed", exc_info=True)


def _is_read(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT" and "FOR UPDATE" not in sql.upper()


class ReconnectingPostgresqlDatabase(peewee.PostgresqlDatabase):
    """A PostgreSQL database whose threads re-open lost connections (see the module doc)."""

    def __init__(self, url: str, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> None:
        params: dict[str, Any] = {"connect_timeout": connect_timeout, **KEEPALIVE_PARAMS}
        super().__init__(url, **params)
        self.status = DatabaseStatus()
        #: every thread's open connection, so closing the database closes them all
        self._opened: weakref.WeakSet[Any] = weakref.WeakSet()
        self._opened_lock = threading.Lock()

    def _connect(self) -> Any:
        conn = super()._connect()  # type: ignore[misc]  # peewee: untyped
        with self._opened_lock:
            self._opened.add(conn)
        # peewee keeps the connection in thread-local state, dropped when the thread ends (an
        # executor shut down with its event loop): close it then instead of leaving it open
        # until collected. The token goes with that state, or with the next connection's.
        token = _ThreadToken()
        weakref.finalize(token, _close_quietly, conn)
        _thread_state(self).closer = token
        return conn

    def close_all(self) -> None:
        """Close every thread's connection, not only the caller's (peewee's ``close``): the
        worker threads that opened the others outlive the appliance in a test process, and
        their connections would stay open (a server backend each) until collected."""
        self.close()
        with self._opened_lock:
            opened, self._opened = list(self._opened), weakref.WeakSet()
        for conn in opened:
            _close_quietly(conn)

    # -- the thread's connection --------------------------------------------------------------

    def _lost(self) -> bool:
        """The thread's connection is dead (closed by the driver or said goodbye)."""
        conn = _thread_state(self).conn
        if _thread_state(self).closed or conn is None:
            return False
        if conn.closed or conn.broken:
            return True
        try:
            return _readable(conn.fileno())
        except (OSError, ValueError):
            return True

    def _discard(self) -> None:
        """Forget the thread's connection; the next statement opens a new one."""
        conn = _thread_state(self).conn
        _thread_state(self).conn = None
        _thread_state(self).closed = True
        if conn is not None:
            try:
                conn.close()
            except Exception:  # it is gone either way
                log.debug("closing a lost database connection failed", exc_info=True)

    def _fresh(self) -> None:
        """Before a unit of work: replace a lost connection, and open one here rather than
        inside peewee's statement, whose error wrapper would turn ours into a plain one."""
        if self._lost():
            log.info("re-opening a lost database connection")
            self._discard()
        if self.is_closed():
            self.connect()

    def _unavailable(self, exc: BaseException, *, outcome_unknown: bool) -> DatabaseUnavailable:
        self.status.failed(_first_line(exc))
        message = UNAVAILABLE
        if outcome_unknown:
            message += "; the change under way may or may not have been stored"
        return DatabaseUnavailable(message, hint=RETRY_HINT, outcome_unknown=outcome_unknown)

    def _connection_failed(self) -> bool:
        conn = _thread_state(self).conn
        return conn is None or bool(conn.closed or conn.broken)

    # -- peewee's entry points ----------------------------------------------------------------

    def connect(self, reuse_if_open: bool = False) -> bool:
        try:
            opened: bool = super().connect(reuse_if_open)
        except peewee.OperationalError as exc:
            raise self._unavailable(exc, outcome_unknown=False) from exc
        self.status.ok()
        return opened

    def _once_more(self, run: Callable[[], T]) -> T:
        """After a connection was lost where nothing was written: ``run`` again on a new one."""
        self._discard()
        self.connect()
        try:
            return run()
        except (peewee.OperationalError, peewee.InterfaceError) as again:
            if not self._connection_failed():
                raise
            raise self._unavailable(again, outcome_unknown=False) from again

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        base: Any = super()
        outside = not self.in_transaction()
        if outside:
            self._fresh()
        try:
            cursor = base.execute_sql(sql, params)
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if not self._connection_failed():
                raise
            if not (outside and _is_read(sql)):
                raise self._unavailable(exc, outcome_unknown=outside) from exc
            cursor = self._once_more(lambda: base.execute_sql(sql, params))  # a read
        self.status.ok()
        return cursor

    def begin(self, *args: Any, **kwargs: Any) -> None:
        base: Any = super()
        self._fresh()
        try:
            base.begin(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError):
            if not self._connection_failed():
                raise
            self._once_more(lambda: base.begin(*args, **kwargs))  # nothing happened yet

    def commit(self) -> None:
        try:
            super().commit()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if not self._connection_failed():
                raise
            raise self._unavailable(exc, outcome_unknown=True) from exc
        self.status.ok()

    def rollback(self) -> None:
        if self._connection_failed():
            return  # the server ended the transaction with the connection
        try:
            super().rollback()
        except (peewee.OperationalError, peewee.InterfaceError):
            if not self._connection_failed():
                raise
            log.debug("rollback on a lost connection skipped", exc_info=True)
