"""What the client commands print: text for people, or one JSON document for scripts.

Results go to stdout. In ``--json`` mode stdout carries exactly one JSON document (written at
the end), and whatever is printed along the way (log lines, progress, hints) goes to stderr
so a script can parse stdout as it is. Errors always go to stderr (``cli.report_error``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class Output:
    def __init__(
        self, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def line(self, text: str = "") -> None:
        """A line of the human result (stdout), or of the running commentary in JSON mode."""
        print(text, file=self.stderr if self.json_mode else self.stdout, flush=True)

    def note(self, text: str) -> None:
        """Commentary that is never part of the result: always stderr."""
        print(text, file=self.stderr, flush=True)

    def result(self, document: Any, lines: list[str] | None = None) -> None:
        """The command's result: ``document`` as JSON, or ``lines`` as text."""
        if self.json_mode:
            json.dump(document, self.stdout, indent=2, ensure_ascii=False)
            self.stdout.write("\n")
            self.stdout.flush()
        else:
            for text in lines or []:
                self.line(text)


def clock(iso: str | None) -> str:
    """``HH:MM:SS`` of an API timestamp (UTC, as the API gives it)."""
    if not iso or len(iso) < 19:
        return "--:--:--"
    return iso[11:19]


def stamp(iso: str | None) -> str:
    """``YYYY-MM-DD HH:MM`` of an API timestamp (UTC)."""
    return iso[:16].replace("T", " ") if iso and len(iso) >= 16 else ""


def log_line(line: dict[str, Any]) -> str:
    """One task log line: time, level, target and message; continuation lines indented."""
    level = str(line.get("level") or "info")
    target = line.get("target") or {}
    where = f"[{target.get('name') or target.get('id')}] " if target else ""
    message = str(line.get("message") or "")
    prefix = f"{clock(line.get('time'))} {level:<9} "
    return prefix + where + message.replace("\n", "\n" + " " * len(prefix))


def duration(ms: Any) -> str:
    if not isinstance(ms, int | float) or ms < 0:
        return ""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def table(rows: list[list[str]], headers: list[str]) -> list[str]:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def page_lines(
    page: dict[str, Any], rows: list[list[str]], headers: list[str], empty: str
) -> list[str]:
    """One page of a listing as a table (``empty`` when it has no rows), noting when ``--take``
    left rows out, since a listing that looks complete but is not misleads."""
    lines = table(rows, headers) if rows else [empty]
    if page["total"] > len(rows):
        lines.append(f"({len(rows)} of {page['total']}; raise --take to see more)")
    return lines


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, else a line per quarter."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shown_at = 0.0
        self.quarter = -1
        self.done = False

    def __call__(self, sent: int, total: int) -> None:
        percent = 100 if total == 0 else sent * 100 // total
        text = f"{self.label}: {size(sent)} of {size(total)} ({percent}%)"
        finished = sent >= total
        if self.tty:
            now = time.monotonic()
            if finished or now - self.shown_at >= 0.1:
                self.shown_at = now
                self.stream.write("\r" + text + "\x1b[K" + ("\n" if finished else ""))
                self.stream.flush()
        elif percent // 25 > self.quarter:
            self.quarter = percent // 25
            self.stream.write(text + "\n")
            self.stream.flush()
        self.done = self.done or finished

    def end(self) -> None:
        """End a line left unfinished on a terminal (the upload stopped part-way)."""
        if self.tty and self.shown_at and not self.done:
            self.stream.write("\n")
            self.stream.flush()
