"""Log lines that a stranger can trigger at will, at most one per key per interval.

A port scan or a flood of refused handshakes must not be able to fill the disk with log lines
(issue 17: 860,000 accept errors in 70 s), yet the operator must still see that it happened
and how much. :class:`RateLimitedLog` logs the first event of each key (a peer address, a
listener) in a window, counts the rest, and when the window closes logs one summary per key
with the count. The number of keys logged per window is capped too, so a scan from many
addresses gives a bounded number of lines; the surplus is folded into one line.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

#: seconds between two lines about the same key
DEFAULT_INTERVAL = 60.0
#: keys that get their own lines per window; events of further keys are only counted
DEFAULT_MAX_KEYS = 20


@dataclass
class _Entry:
    level: int
    suppressed: int = 0
    last: str = ""


class RateLimitedLog:
    """``note(key, message)``: log it now, or count it for the end-of-window summary.

    ``what`` names the events in summaries (e.g. "refused handshakes"). Runs on an event loop
    (the summary is a timer on it); events noted outside a running loop are logged directly.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self._log, self._what = logger, what
        self.interval, self.max_keys = interval, max_keys
        self._entries: dict[str, _Entry] = {}
        self._other_events = 0
        self._other_keys: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None

    def note(self, key: str, message: str, *, level: int = logging.WARNING) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._log.log(level, "%s", message)
            return
        if self._timer is None:
            self._timer = loop.call_later(self.interval, self._flush)
        entry = self._entries.get(key)
        if entry is not None:
            entry.suppressed += 1
            entry.last = message
            entry.level = max(entry.level, level)
            return
        if len(self._entries) >= self.max_keys:
            self._other_events += 1
            if len(self._other_keys) < 10_000:  # bounded: only the summary's count uses it
                self._other_keys.add(key)
            return
        self._entries[key] = _Entry(level)
        self._log.log(level, "%s", message)

    def flush(self) -> None:
        """Log the pending summaries now (also done by the timer at the end of each window)."""
        if self._timer is not None:
            self._timer.cancel()
        self._flush()

    def _flush(self) -> None:
        self._timer = None
        seconds = f"{self.interval:g} s"
        for key, entry in self._entries.items():
            if entry.suppressed:
                self._log.log(
                    entry.level,
                    "%s: %d more %s in the last %s (the last: %s)",
                    key,
                    entry.suppressed,
                    self._what,
                    seconds,
                    entry.last,
                )
        if self._other_events:
            self._log.warning(
                "%d more %s from %s%d other sources in the last %s, not logged one by one",
                self._other_events,
                self._what,
                "at least " if len(self._other_keys) >= 10_000 else "",
                len(self._other_keys),
                seconds,
            )
        self._entries.clear()
        self._other_events = 0
        self._other_keys.clear()
