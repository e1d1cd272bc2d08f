"""Every thread's SQLite connection gets the page cache the appliance sets (issue 14).

Each thread that touches the database holds a connection of its own for as long as it lives;
the setting applies to each (octo_appliance/db/connection.py says why its size).
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

from octo_appliance.db.connection import SQLITE_CACHE_KIB, open_database


def test_each_threads_connection_caches_at_most_sqlite_cache_kib(tmp_path: Path) -> None:
    db = open_database(None, tmp_path)
    try:

        def cache_size() -> int:
            return int(db.execute_sql("PRAGMA cache_size").fetchone()[0])

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            in_threads = list(pool.map(lambda _: cache_size(), range(3)))
        # negative: KiB, not pages (SQLite's convention)
        assert [cache_size(), *in_threads] == [-SQLITE_CACHE_KIB] * 4
    finally:
        db.close()
