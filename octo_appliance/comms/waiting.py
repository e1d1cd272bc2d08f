"""Accepted connections waiting for a handshake slot of their address, for comms/admission.py.

Many agents behind one address (a NAT, or every agent process of a benchmark on 127.0.0.1)
dial at once after a restart. Over the per-address cap of handshakes in progress, a newcomer
used to push out the oldest handshake of its address, which then dialled again and pushed out
another: 5,000 agents from one address stalled for minutes. Here a newcomer waits instead,
accepted but not started (no TLS state: a socket and an address), until a handshake of its
address ends; how many wait, and for how long, is bounded.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Any

#: (socket, peer address, loop time it started waiting)
Waiting = tuple[socket.socket, Any, float]


class WaitingRoom:
    """At most ``capacity`` waiting connections, first come first served per address."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._by_host: dict[str, deque[Waiting]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def hosts(self) -> list[str]:
        return list(self._by_host)

    def hold(self, host: str, entry: Waiting) -> Waiting | None:
        """Add ``entry``; over capacity the oldest of the same address (maybe ``entry``) is
        returned, for the caller to close."""
        queue = self._by_host.setdefault(host, deque())
        queue.append(entry)
        self._count += 1
        if self._count <= self.capacity:
            return None
        return self._pop(host, queue)

    def take(self, host: str) -> Waiting | None:
        """The longest waiting connection of ``host``, if any."""
        queue = self._by_host.get(host)
        return self._pop(host, queue) if queue else None

    def clear(self) -> list[Waiting]:
        """Everything waiting, which no longer waits."""
        entries = [entry for queue in self._by_host.values() for entry in queue]
        self._by_host.clear()
        self._count = 0
        return entries

    def _pop(self, host: str, queue: deque[Waiting]) -> Waiting:
        entry = queue.popleft()
        self._count -= 1
        if not queue:
            del self._by_host[host]
        return entry
