"""Reading a script's output pipes: whole lines, in order, with bounded memory.

One :class:`Pump` thread per pipe reads raw chunks, cuts them into lines (a line longer than
``MAX_LINE_BYTES`` is split) and hands each chunk's lines to the calling thread through a
bounded queue. When the queue is full the pump stops reading, the pipe fills and the script
blocks in ``write``: that is the back-pressure that keeps a chatty script from filling the
runner's (and the agent's) memory while the agent, the connection or the appliance is slower.

After the script exits, its pipes usually reach end-of-file. A process it left running in the
background may still hold them open: :class:`Drain` decides when to stop reading then without
losing what the script itself wrote. All of that was in the pipe when the script exited (or
already read), so a read that starts after the exit and finds the pipe emptied (returns less
than it asked for) proves it is all in. Reading goes on while data keeps coming and stops
once the pipes were idle for ``DRAIN_IDLE_SECONDS``; a background process that never stops
writing is cut off after ``DRAIN_MAX_SECONDS``, and only on pipes proven emptied since.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import IO, TYPE_CHECKING

#: Longest line handed on as one log event; longer output is split at this many bytes.
MAX_LINE_BYTES = 64 * 1024
#: Bytes one ``read`` takes from a pipe (a chunk's lines travel through the queue together).
READ_BYTES = 64 * 1024
#: Chunks of lines waiting for the calling thread, per run: with ``READ_BYTES`` chunks (a
#: held partial line adds at most ``MAX_LINE_BYTES``) at most ~8 MiB are buffered.
QUEUE_CHUNKS = 64
#: After the script exits: stop reading once its pipes were idle this long.
DRAIN_IDLE_SECONDS = 3.0
#: After the script exits: stop reading pipes a background process keeps writing to after
#: this long (once each was found emptied after the exit).
DRAIN_MAX_SECONDS = 30.0

if TYPE_CHECKING:  # annotations only: the runner also runs on Python 3.9
    from typing import TypeAlias

    #: what travels through the queue: (stream name, a chunk's lines or None at end-of-file)
    Item: TypeAlias = tuple[str, list[bytes] | None]


def line_queue() -> queue.Queue[Item]:
    return queue.Queue(maxsize=QUEUE_CHUNKS)


class Pump:
    """Reads one pipe in a daemon thread, handing its lines on through ``lines``.

    The pump owns the pipe and closes it when the pipe ends: only its own thread reads the
    descriptor, so no other thread may close it under a blocked read (the number could be
    reused by another file), and a pipe a background process holds open stays open until then.
    """

    def __init__(self, name: str, pipe: IO[bytes], lines: queue.Queue[Item]) -> None:
        self.name = name
        self._pipe = pipe
        self.fd = pipe.fileno()
        self.lines = lines
        #: when the read now blocking started (None while not in a read)
        self.reading_since: float | None = None
        #: when the last read that emptied the pipe started (its lines are queued by now)
        self.emptied_at = 0.0
        self._partial = b""
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def idle_for(self, now: float) -> float:
        """How long the pump has been waiting for data (0 while it has some in hand)."""
        since = self.reading_since
        return 0.0 if since is None else now - since

    def take_partial(self) -> list[bytes]:
        """Stop handing on lines and return the unfinished last line (if any)."""
        with self._lock:
            self._stopped = True
            partial, self._partial = self._partial, b""
        return [partial] if partial else []

    def _run(self) -> None:
        try:
            while True:
                started = self.reading_since = time.monotonic()
                chunk = os.read(self.fd, READ_BYTES)
                self.reading_since = None
                if not chunk:
                    break
                self._hand_on(chunk)
                if len(chunk) < READ_BYTES:
                    self.emptied_at = started
        except OSError:
            pass
        finally:
            self._pipe.close()
            with self._lock:
                rest = [] if self._stopped or not self._partial else [self._partial]
                self._partial = b""
            if rest:
                self._put(rest)
            self.lines.put((self.name, None))

    def _hand_on(self, chunk: bytes) -> None:
        with self._lock:
            if self._stopped:
                return
            data = self._partial + chunk
            complete, self._partial = split_lines(data)
        if complete:
            self._put(complete)

    def _put(self, lines: list[bytes]) -> None:
        self.lines.put((self.name, lines))  # blocks while the queue is full: back-pressure


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """``(whole lines without their line ending, the unfinished rest)``; a line longer than
    ``MAX_LINE_BYTES`` is cut into pieces of that size, the rest kept for more data."""
    lines = data.split(b"\n")
    rest = lines.pop()
    complete: list[bytes] = []
    for line in lines:
        while len(line) > MAX_LINE_BYTES:
            complete.append(line[:MAX_LINE_BYTES])
            line = line[MAX_LINE_BYTES:]
        complete.append(line[:-1] if line.endswith(b"\r") else line)
    while len(rest) > MAX_LINE_BYTES:
        complete.append(rest[:MAX_LINE_BYTES])
        rest = rest[MAX_LINE_BYTES:]
    return complete, rest


class Drain:
    """When to stop reading after the script exited with its pipes still open."""

    IDLE = "idle"
    STILL_WRITING = "writing"

    def __init__(self) -> None:
        #: after the script's real exit (it was seen exited then)
        self.exited_at = time.monotonic()

    def verdict(self, open_pumps: list[Pump], queue_empty: bool) -> str | None:
        """Why to stop now (``IDLE`` or ``STILL_WRITING``), or None to keep reading."""
        now = time.monotonic()
        if now - self.exited_at < DRAIN_IDLE_SECONDS:
            return None
        idle = [p.idle_for(now) >= DRAIN_IDLE_SECONDS for p in open_pumps]
        if queue_empty and all(idle):
            return self.IDLE
        if now - self.exited_at >= DRAIN_MAX_SECONDS and all(
            quiet or p.emptied_at >= self.exited_at for p, quiet in zip(open_pumps, idle)
        ):
            return self.STILL_WRITING
        return None
