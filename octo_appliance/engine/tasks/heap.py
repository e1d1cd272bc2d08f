"""Give the C heap that a burst of tasks freed back to the system (glibc only).

A burst of tasks (5,000 first health checks, 100 at a time) allocates from several glibc
arenas at once, in the event loop and in the database threads; when it ends, most of it is
freed but glibc keeps the free pages in its arenas, so the appliance's RSS stays at the
burst's high-water mark. ``malloc_trim(0)`` returns whole free pages of every arena to the
kernel. The task engine's :class:`IdleTrim` calls it once no task has run for
:data:`TRIM_AFTER_SECONDS`: once per burst, in a worker thread (it walks every arena), never
while a task runs. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
from collections.abc import Callable

#: seconds with no task running after which the heap is trimmed; a task starting meanwhile
#: postpones the trim to the end of its burst
TRIM_AFTER_SECONDS = 1.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def available() -> bool:
    """Whether this C library can trim (glibc)."""
    return _malloc_trim() is not None


def trim() -> bool:
    """Return the free pages of every arena to the system; whether any was returned."""
    function = _malloc_trim()
    return bool(function(0)) if function is not None else False


class IdleTrim:
    """:func:`trim` once :meth:`idle` was called and ``busy()`` is still false
    :data:`TRIM_AFTER_SECONDS` later; ``run`` runs it (in a worker thread). In the loop."""

    def __init__(
        self, busy: Callable[[], bool], run: Callable[[Callable[[], object]], None]
    ) -> None:
        self.busy = busy
        self.run = run
        self.after = TRIM_AFTER_SECONDS
        #: trims started so far
        self.count = 0
        self._timer: asyncio.TimerHandle | None = None

    def idle(self) -> None:
        """Nothing runs now: trim soon unless work starts meanwhile."""
        if self._timer is None and available():
            self._timer = asyncio.get_running_loop().call_later(self.after, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self.busy():  # else a new burst runs: its end calls idle() again
            self.run(self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        """In the worker thread: a task may have started since :meth:`_due` looked (reading
        the engine's count of running tasks from this thread is safe in CPython)."""
        if not self.busy():
            self.count += 1
            trim()
