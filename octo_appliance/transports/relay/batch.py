"""Coalescing of the relay's statements: what many calls ask at once goes in one statement.

A fan-out hands dozens of calls to another node in the same moment, and their outcomes come
back together: one statement (one round trip, one transaction, one ``NOTIFY`` per node) for
all of them costs PostgreSQL and both nodes' event loops a fraction of one per call. A
:class:`Batcher` collects the items asked for while its previous statement was under way
(or in the same turn of the event loop) and runs the next statement with all of them, as
the engine coalesces target results. A batch that fails is run again one item at a time, so
one bad item (a call withdrawn meanwhile) fails only itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: items in one statement at most (a notification's payload names each call: < 8,000 bytes)
MAX_BATCH = 100


class Batcher(Generic[K, V]):
    """``await get(item)``: ``run(items)``'s answer for ``item`` (a dict keyed by item;
    missing: None), ``run`` being called with every item waiting, one batch at a time."""

    def __init__(self, run: Callable[[Sequence[K]], Awaitable[dict[K, V]]]) -> None:
        self._run = run
        self._pending: list[tuple[K, asyncio.Future[V | None]]] = []
        self._flight: asyncio.Task[None] | None = None

    async def get(self, item: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flight is None or self._flight.done():
            self._flight = asyncio.get_running_loop().create_task(self._fly())
        return await future

    async def settled(self) -> None:
        """Until no batch is under way (a caller withdrawing its item waits for it)."""
        while self._flight is not None and not self._flight.done():
            await asyncio.shield(self._flight)

    async def _fly(self) -> None:
        await asyncio.sleep(0)  # the rest of this turn's items join the batch
        while self._pending:
            batch = [(k, f) for k, f in self._pending[:MAX_BATCH] if not f.cancelled()]
            del self._pending[:MAX_BATCH]
            if batch:
                await self._answer(batch)

    async def _answer(self, batch: list[tuple[K, asyncio.Future[V | None]]]) -> None:
        try:
            answers = await self._run([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1:  # one item may be at fault: each alone
                for one in batch:
                    await self._answer([one])
                return
            _settle(batch[0][1], exc)
            return
        except BaseException as exc:  # cancelled (the node stops): so are the callers
            for _, future in batch:
                _settle(future, exc)
            raise
        for item, future in batch:
            if not future.done():
                future.set_result(answers.get(item))


def _settle(future: asyncio.Future[V | None], exc: BaseException) -> None:
    if not future.done():
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
