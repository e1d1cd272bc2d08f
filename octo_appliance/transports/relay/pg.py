"""The relay's own PostgreSQL connections: a few for its writes, one that ``LISTEN``\\ s.

The relay talks to PostgreSQL asynchronously (psycopg's ``AsyncConnection``) on the event
loop that serves agents, rather than through peewee in worker threads: a relayed event is one
short round trip, and the listening connection must stay open anyway. A connection that
failed is dropped and a new one opened on the next use; the listener reconnects on its own
and says so (``on_reconnect``), since notifications sent while it was away are lost.

The relay's connections commit asynchronously (``synchronous_commit = off``). PostgreSQL
commits every transaction that sent a ``NOTIFY`` one at a time, under one lock for the whole
server, and with synchronous commit each holds that lock through its WAL flush: 50 relayed
calls (a call row, an event batch and an outcome each, every one with its ``NOTIFY``) queued
behind about 150 flushes in a row, which was the several seconds a 2-node fan-out lost
(docs/ha.md, "Calls across nodes"). Without the wait for the flush the lock is held for well
under a millisecond. What that gives up is the durability of the last few hundred
milliseconds of relay rows if PostgreSQL itself crashes; those rows only live while their
calls run, and such a crash drops every connection, which fails every relayed call in flight
anyway. The engine's own writes (tasks, results, logs) stay synchronous: they use peewee's
connections, not these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import psycopg

log = logging.getLogger("octo_appliance.relay")

#: how long the listener waits before it reconnects after losing PostgreSQL
RECONNECT_SECONDS = 1.0
#: set on every connection of the pool (see the module docstring)
SESSION = "SET synchronous_commit = off"


class Pool:
    """At most ``size`` autocommit connections, opened on demand and reused."""

    def __init__(self, url: str, size: int = 8) -> None:
        self._url = url
        self._idle: list[psycopg.AsyncConnection[tuple[object, ...]]] = []
        self._slots = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    await conn.execute(SESSION)
                except BaseException:
                    await _discard(conn)
                    raise
            try:
                yield conn
            except BaseException:
                await _discard(conn)
                raise
            else:
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    self._idle.append(conn)
                else:
                    await _discard(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _discard(conn)


async def _discard(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


class Listener:
    """``LISTEN`` on ``channels``; each notification goes to ``on_notify(channel, payload)``."""

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self._url = url
        self._channels = tuple(channels)
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    for channel in self._channels:
                        await conn.execute(f"LISTEN {channel}")
                    self.listening.set()
                    if not first:
                        self._on_reconnect()
                    first = False
                    async for note in conn.notifies():
                        try:
                            self._on_notify(note.channel, note.payload)
                        except Exception:  # one bad notification must not stop the others
                            log.exception("the relay failed to handle a notification")
            except psycopg.Error as exc:
                self.listening.clear()
                first = False
                log.warning("the relay lost its PostgreSQL listener (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_SECONDS)
