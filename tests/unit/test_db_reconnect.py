"""A lost PostgreSQL connection is re-opened; only what is safe to repeat is repeated.

Against the machine's PostgreSQL, on this run's private database; backends are terminated one
by one, by the pid of the connection under test.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from octo_appliance.db.reconnect import ReconnectingPostgresqlDatabase
from octo_appliance.exceptions import DatabaseUnavailable
from tests.pg_proxy import PgProxy

pytestmark = pytest.mark.postgres

TABLE = "reconnect_probe"


@pytest.fixture
def db(pg_url: str) -> Iterator[ReconnectingPostgresqlDatabase]:
    database = ReconnectingPostgresqlDatabase(pg_url, connect_timeout=2)
    database.execute_sql(f"DROP TABLE IF EXISTS {TABLE}")
    database.execute_sql(f"CREATE TABLE {TABLE} (x int)")
    yield database
    database.execute_sql(f"DROP TABLE IF EXISTS {TABLE}")
    database.close()


def backend_pid(db: ReconnectingPostgresqlDatabase) -> int:
    return int(db.execute_sql("SELECT pg_backend_pid()").fetchone()[0])


def terminate(pg_url: str, pid: int) -> None:
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # the backend is gone once it left pg_stat_activity
        for _ in range(100):
            row = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row is None:
                return
            time.sleep(0.02)


def rows(db: ReconnectingPostgresqlDatabase) -> int:
    return int(db.execute_sql(f"SELECT count(*) FROM {TABLE}").fetchone()[0])


def test_a_terminated_idle_connection_is_reopened_for_reads_and_transactions(db, pg_url):
    first = backend_pid(db)
    terminate(pg_url, first)
    second = backend_pid(db)  # a read: no error, a new backend
    assert second != first
    terminate(pg_url, second)
    with db.atomic():  # a transaction: BEGIN runs on a new connection
        db.execute_sql(f"INSERT INTO {TABLE} VALUES (1)")
    assert rows(db) == 1
    assert db.status.up


def test_a_connection_lost_inside_a_transaction_is_not_retried(db, pg_url):
    with pytest.raises(DatabaseUnavailable) as caught, db.atomic():
        db.execute_sql(f"INSERT INTO {TABLE} VALUES (1)")
        terminate(pg_url, backend_pid(db))
        db.execute_sql(f"INSERT INTO {TABLE} VALUES (2)")
    assert not caught.value.outcome_unknown  # the transaction never committed
    assert rows(db) == 0  # and the next statement works again
    assert db.status.up


def _terminate_when_busy(pg_url: str, pid: int) -> threading.Thread:
    def run() -> None:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            for _ in range(200):
                state = admin.execute(
                    "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                if state is not None and state[0] == "active":
                    break
                time.sleep(0.01)
        terminate(pg_url, pid)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_write_cut_mid_statement_is_not_repeated_and_says_so(db, pg_url):
    killer = _terminate_when_busy(pg_url, backend_pid(db))
    with pytest.raises(DatabaseUnavailable) as caught:
        db.execute_sql(f"INSERT INTO {TABLE} SELECT 1 FROM pg_sleep(3)")
    killer.join()
    assert caught.value.outcome_unknown
    assert rows(db) == 0


def test_a_read_cut_mid_statement_runs_again_on_a_new_connection(db, pg_url):
    killer = _terminate_when_busy(pg_url, backend_pid(db))
    result = db.execute_sql("SELECT 42 FROM pg_sleep(1)").fetchone()
    killer.join()
    assert result == (42,)


def test_an_outage_is_logged_once_and_its_end_once(pg_url, caplog):
    with PgProxy(pg_url) as proxy:
        db = ReconnectingPostgresqlDatabase(proxy.url, connect_timeout=2)
        db.execute_sql("SELECT 1")
        proxy.stop()
        caplog.set_level(logging.INFO, logger="octo_appliance.db")
        for _ in range(5):
            with pytest.raises(DatabaseUnavailable):
                db.execute_sql("SELECT 1")
        assert not db.status.up
        proxy.start()
        assert db.execute_sql("SELECT 1").fetchone() == (1,)
        assert db.status.up
        db.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([m for m in messages if "database is unavailable" in m]) == 1, messages
    assert len([m for m in messages if "reachable again" in m]) == 1, messages
