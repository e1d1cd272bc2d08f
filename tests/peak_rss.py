"""The peak resident memory of a process tree, sampled in a thread: how the output-volume
tests show that memory stays bounded (a bound on memory, never on time)."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


class PeakRss:
    """The largest resident memory a process and its descendants had together (sampled every
    50 ms until :meth:`stop`, or until the process is gone)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for process in [self.root, *self.root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return self.peak
