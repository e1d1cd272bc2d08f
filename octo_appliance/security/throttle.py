"""Login throttling: failed sign-ins slow down, then lock out, a username and a client address.

Passwords are guessable where API keys are not, so ``POST /auth/login`` counts failures per
username and per client address. After ``login_free_failures`` failures each further one blocks
that name or address for a delay that doubles every time (``login_delay_seconds``, 2x, 4x, ...);
at ``login_lockout_failures`` it is locked for ``login_lockout_seconds``. A blocked attempt is
answered 429 with ``Retry-After`` at once, before any password is checked: nothing sleeps, so
an attacker ties up no worker thread, and a blocked guess learns nothing even when right.
A successful sign-in clears both counters. Unknown usernames are counted exactly like real
ones, so throttling cannot tell an attacker which names exist.

The counters live behind :class:`ThrottleStore` (get/put/delete of a small record). The
in-memory store here is per node; several appliance nodes behind one address would each count
on their own (an attacker gets at most N times the attempts), until a store in the shared
database replaces it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: the most names and addresses kept in memory; past it, stale records go first, then the oldest
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class ThrottleRecord:
    failures: int
    last_failure: float
    blocked_until: float


class ThrottleStore(Protocol):
    """Where the failure counters live: one record per key (``user:…`` or ``address:…``)."""

    def get(self, key: str) -> ThrottleRecord | None: ...

    def put(self, key: str, record: ThrottleRecord) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryThrottleStore:
    """The counters of this node, bounded in size (a flood of made-up names cannot fill memory)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._records: dict[str, ThrottleRecord] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, key: str) -> ThrottleRecord | None:
        return self._records.get(key)

    def put(self, key: str, record: ThrottleRecord) -> None:
        with self._lock:
            self._records.pop(key, None)  # re-insert: the dict's order is the age order
            self._records[key] = record
            if len(self._records) > self.max_entries:
                self._evict(record.last_failure)

    def delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def _evict(self, now: float) -> None:
        for key in [key for key, rec in self._records.items() if rec.blocked_until <= now]:
            del self._records[key]
        while len(self._records) > self.max_entries:
            del self._records[next(iter(self._records))]


@dataclass(frozen=True)
class ThrottlePolicy:
    """The settings: see ``login_*`` in ``octo_appliance/config.py``."""

    free_failures: int = 3
    delay_seconds: int = 1
    lockout_failures: int = 10
    lockout_seconds: int = 900

    def block_seconds(self, failures: int) -> float:
        """How long ``failures`` consecutive failures block further attempts (0: not at all)."""
        if failures >= self.lockout_failures:
            return float(self.lockout_seconds)
        if failures < self.free_failures:
            return 0.0
        doublings = failures - self.free_failures
        return float(min(self.delay_seconds * 2**doublings, self.lockout_seconds))


@dataclass(frozen=True)
class Penalty:
    """A block that a failure just started, for the audit log."""

    scope: str  # "user" or "address"
    subject: str
    failures: int
    seconds: int
    locked_out: bool


class LoginThrottle:
    """Counts failed sign-ins per username and per client address (see the module doc)."""

    def __init__(
        self,
        policy: ThrottlePolicy,
        store: ThrottleStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.store: ThrottleStore = store if store is not None else MemoryThrottleStore()
        self.clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def _keys(username: str, address: str) -> dict[str, tuple[str, str]]:
        name = username.casefold()
        return {"user:" + name: ("user", name), "address:" + address: ("address", address)}

    def retry_after(self, username: str, address: str) -> int:
        """Whole seconds until this name and address may try again (0: they may now)."""
        now = self.clock()
        wait = 0.0
        for key in self._keys(username, address):
            record = self.store.get(key)
            if record is not None:
                wait = max(wait, record.blocked_until - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, username: str, address: str) -> list[Penalty]:
        """Count a failure for both; return the blocks it started."""
        now = self.clock()
        penalties = []
        with self._lock:
            for key, (scope, subject) in self._keys(username, address).items():
                record = self.store.get(key)
                failures = 1
                # failures are forgotten after a lockout period of quiet once a block ended
                quiet_since = max(record.last_failure, record.blocked_until) if record else now
                if record is not None and now - quiet_since < self.policy.lockout_seconds:
                    failures = record.failures + 1
                seconds = self.policy.block_seconds(failures)
                self.store.put(key, ThrottleRecord(failures, now, now + seconds))
                if seconds > 0:
                    locked = failures >= self.policy.lockout_failures
                    penalties.append(Penalty(scope, subject, failures, math.ceil(seconds), locked))
        return penalties

    def succeeded(self, username: str, address: str) -> None:
        """A correct sign-in: forget the failures of this name and this address."""
        with self._lock:
            for key in self._keys(username, address):
                self.store.delete(key)
