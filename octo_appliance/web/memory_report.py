"""A memory report on SIGUSR2, for finding where the appliance's memory goes (off by default).

``OCTO_DEBUG_MEMORY=<file>`` in the environment of ``serve``: every SIGUSR2 appends a report
to ``<file>``: the resident size, the C allocator's view (glibc ``mallinfo2``: bytes in use,
bytes free but kept), and the live Python objects by type with their change since the last
report. The first SIGUSR2 also starts :mod:`tracemalloc` (:data:`FRAMES` frames per
allocation: it costs CPU and memory, so never in production, and not from the start: a
start under tracing takes minutes on a busy machine); the later reports add the bytes
allocated since then and still held, by the line that allocated them, by file and by call
path; ``OCTO_DEBUG_MEMORY_TRACE=0`` leaves tracing off (the reports without the traced
tables: cheap enough for a run of thousands of agents). Without ``OCTO_DEBUG_MEMORY`` nothing
is traced and no signal handler is installed.
docs/performance.md ("5,000 polling agents", memory) says what such reports found.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import gc
import os
import signal
import threading
import time
import tracemalloc
from pathlib import Path

import psutil

VARIABLE = "OCTO_DEBUG_MEMORY"
TRACE_VARIABLE = "OCTO_DEBUG_MEMORY_TRACE"
#: frames kept per traced allocation: enough to see which of our calls made it
FRAMES = 12
#: lines of each table in a report
TOP = 40


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def malloc_figures() -> dict[str, int]:
    """glibc's heap: ``arena`` (bytes from the system in the main and thread arenas),
    ``in_use`` and ``free_kept`` (freed but not given back); empty elsewhere."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {
        "arena": info.arena,
        "mmapped": info.hblkhd,
        "in_use": info.uordblks,
        "free_kept": info.fordblks,
    }


def sqlite_figures() -> dict[str, int]:
    """SQLite's own heap (page caches, statements) in this process: now and its peak."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    except OSError:
        return {}
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    return {"used": lib.sqlite3_memory_used(), "peak": lib.sqlite3_memory_highwater(0)}


def install(path: str | None = None) -> bool:
    """Start tracing and handle SIGUSR2 on the running loop if :data:`VARIABLE` is set."""
    path = path if path is not None else os.environ.get(VARIABLE, "")
    if not path:
        return False
    loop = asyncio.get_running_loop()
    counts: collections.Counter[str] = collections.Counter()
    trace = os.environ.get(TRACE_VARIABLE, "1") != "0"
    loop.add_signal_handler(signal.SIGUSR2, write_report, Path(path), counts, trace)
    return True


def write_report(path: Path, before: collections.Counter[str], trace: bool = True) -> None:
    """Append one report to ``path`` (after a full collection: what is left is held);
    ``before``: the object counts of the last report, replaced by this one's; ``trace``:
    start tracing (first report) or report what it traced (later ones)."""
    gc.collect()
    lines = [f"=== memory report {time.strftime('%H:%M:%S')} pid {os.getpid()}"]
    lines.append(f"rss {psutil.Process().memory_info().rss / 2**20:.1f} MB")
    malloc = malloc_figures()
    lines.append("malloc " + " ".join(f"{k}={v / 2**20:.1f}MB" for k, v in malloc.items()))
    lines.append(
        "sqlite " + " ".join(f"{k}={v / 2**20:.1f}MB" for k, v in sqlite_figures().items())
    )
    lines.append(
        f"threads {threading.active_count()} (Python), {len(os.listdir('/proc/self/task'))} (all)"
    )
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        lines.append(f"traced {current / 2**20:.1f} MB (peak {peak / 2**20:.1f} MB)")
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    lines.append(f"-- gc objects by type (top {TOP}), change since the last report")
    lines += [f"{n:>9} {n - before[name]:>+9} {name}" for name, n in counts.most_common(TOP)]
    before.clear()
    before.update(counts)
    if not trace:
        pass
    elif not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)
        lines.append("tracing started")
    else:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        for key, title in (("filename", "file"), ("lineno", "line")):
            lines.append(f"-- traced by {title} (top {TOP})")
            for stat in snapshot.statistics(key)[:TOP]:
                frame = stat.traceback[0]
                lines.append(
                    f"{stat.size / 1024:>10.0f} KB {stat.count:>8} {frame.filename}:{frame.lineno}"
                )
        lines.append(f"-- traced by traceback (top {TOP // 2})")
        for stat in snapshot.statistics("traceback")[: TOP // 2]:
            lines.append(f"{stat.size / 1024:>10.0f} KB {stat.count:>8}")
            lines += [f"      {frame.filename}:{frame.lineno}" for frame in stat.traceback]
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):  # what the C heap could give back
        libc.malloc_trim(0)
        rss = psutil.Process().memory_info().rss / 2**20
        lines.append(f"rss after malloc_trim(0) {rss:.1f} MB (the trim stays done)")
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
