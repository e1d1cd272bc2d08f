"""Answers of hot read endpoints, kept until the next change made through the API.

A list page (``GET /projects?take=50``) costs about a millisecond of Python per request: two
queries, fifty rows through peewee, JSON. Served from here it costs a dictionary lookup, on the
event loop, with no worker-thread hop. Only endpoints declared ``cache=True`` are kept, and
only those whose data changes through API writes alone (projects, environments); every API
write, whatever it touched, empties the cache once it committed.

Each entry is keyed by the caller's credential (the hash the principal cache uses) and the
exact path and query, so one caller never sees another's answer, and it is used only while
that credential is still in the principal cache, which is dropped on any security change. A
request that started before a write and finishes after it is not stored (the version it
started under is gone). With PostgreSQL another node may write, so entries also expire after
``ttl`` seconds there.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import peewee

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance

#: entries kept at most; when full the cache starts over (hot pages come back at once)
MAX_ENTRIES = 2048
#: seconds an answer stays when another appliance node may change the data (PostgreSQL)
SHARED_DATABASE_TTL = 1.0

Key = tuple[str, str, str]


class ResponseCache:
    def __init__(self, ttl: float | None = None) -> None:
        self.ttl = ttl
        self._entries: dict[Key, tuple[bytes, float]] = {}
        self._version = 0
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        """Changes at every :meth:`invalidate`; read it before computing an answer."""
        return self._version

    def get(self, key: Key) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        body, expires = entry
        if expires and expires < time.monotonic():
            return None
        return body

    def put(self, key: Key, version: int, body: bytes) -> None:
        """Keep ``body`` unless a write happened since ``version`` was read."""
        with self._lock:
            if version != self._version:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            expires = time.monotonic() + self.ttl if self.ttl else 0.0
            self._entries[key] = (body, expires)

    def invalidate(self) -> None:
        with self._lock:
            self._version += 1
            self._entries.clear()


def attach_response_cache(appliance: Appliance) -> ResponseCache:
    """A cache for the routes of ``appliance``, emptied by every change committed through it."""
    shared = isinstance(appliance.db, peewee.PostgresqlDatabase)
    cache = ResponseCache(ttl=SHARED_DATABASE_TTL if shared else None)
    appliance.change_listeners.append(cache.invalidate)
    return cache
