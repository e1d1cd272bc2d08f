"""Running many things at once, at most N at a time (a rolling window).

As one target finishes, the next starts: with a window of 2 on five targets, two run, and a
third starts the moment either of them ends. An exception other than a target's own failure
(an abort, a cancel) stops the others and is raised as itself, not as an exception group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from octo_appliance.engine.tasks import TaskFailed

T = TypeVar("T")
R = TypeVar("R")


def effective_window(window: int | None, cap: int) -> int:
    """The step's window, never above the appliance-wide per-step cap."""
    return min(window, cap) if window else cap


async def run_all(coros: Iterable[Coroutine[Any, Any, R]]) -> list[R]:
    """Await all, in order; the first unexpected error cancels the rest and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except BaseExceptionGroup as errors:
        raise _first(errors) from None
    return [task.result() for task in tasks]


def _first(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []

    def walk(group: BaseExceptionGroup[BaseException]) -> None:
        for error in group.exceptions:
            if isinstance(error, BaseExceptionGroup):
                walk(error)
            else:
                leaves.append(error)

    walk(errors)
    for leaf in leaves:
        if isinstance(leaf, TaskFailed):
            return leaf
    return leaves[0]


async def rolling(
    items: Sequence[T], limit: int | None, work: Callable[[T], Awaitable[R]]
) -> list[R]:
    """``work(item)`` for every item, at most ``limit`` at a time; results in item order."""
    gate = asyncio.Semaphore(limit) if limit else None

    async def one(item: T) -> R:
        if gate is None:
            return await work(item)
        async with gate:
            return await work(item)

    return await run_all(one(item) for item in items)
