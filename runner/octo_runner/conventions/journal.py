"""The deployment journal: one JSON file per target listing every package installation.

``deploy-package`` reads it to skip a package already installed by the same release (unless
forced) and appends an entry after each attempt; ``retention`` reads it to find old
releases and removes the entries it cleans up. The file is ``{"version": 1, "entries":
[...]}`` in the order the entries were written (the last is the most recent). Writes take an
exclusive lock on ``<file>.lock`` (POSIX ``flock``) so two tasks on one target do not lose
each other's entries, and replace the file atomically. A missing file is an empty journal;
an unreadable one is a warning, kept aside as ``<file>.corrupt`` when the journal is next
written, so a bad file never blocks a deployment.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

from ..errors import RunnerError
from ..protocol import EventWriter
from .files import describe_os_error, write_atomic

VERSION = 1


@dataclass(frozen=True)
class Entry:
    """One installation attempt of a package on this target."""

    project: str
    project_id: str
    environment: str
    package_id: str
    version: str
    sha256: str
    release: str
    deployment_id: str
    extracted_to: str
    installed_to: str
    installed_at: str
    success: bool

    def same_project(self, project: str, project_id: str = "") -> bool:
        """Matched by id when both sides have one (a renamed project stays the same)."""
        if project_id and self.project_id:
            return self.project_id == project_id
        return self.project.casefold() == project.casefold()

    def same_release(self, other: Entry) -> bool:
        return (
            self.same_project(other.project, other.project_id)
            and self.environment.casefold() == other.environment.casefold()
            and self.package_id.casefold() == other.package_id.casefold()
            and self.version == other.version
            and self.release == other.release
        )

    def folders(self) -> tuple[str, ...]:
        return tuple(path for path in (self.extracted_to, self.installed_to) if path)


_FIELDS = {f.name: f.type for f in fields(Entry)}


def now() -> str:
    """UTC, ISO 8601 with milliseconds and ``Z`` (the runner's event time format)."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _entry(item: Any) -> Entry | None:
    if not isinstance(item, dict):
        return None
    values: dict[str, Any] = {}
    for name in _FIELDS:
        value = item.get(name, "" if name not in ("success", "installed_to") else None)
        if name == "success":
            if not isinstance(value, bool):
                return None
        elif name == "installed_to" and value is None:
            value = ""
        elif not isinstance(value, str):
            return None
        values[name] = value
    return Entry(**values)


class Journal:
    """Reads and rewrites one journal file; warnings go to ``events``."""

    def __init__(self, path: str, events: EventWriter) -> None:
        self.path = path
        self.events = events
        self.corrupt = False

    def read(self) -> list[Entry]:
        """All readable entries, oldest first (an unreadable file or entry is a warning)."""
        self.corrupt = False
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RunnerError(
                f"cannot read the deployment journal: {describe_os_error(exc)}",
                hint="check that the agent's user may read and write it",
            ) from exc
        try:
            document = json.loads(data.decode("utf-8"))
            items = document["entries"] if isinstance(document, dict) else None
            if not isinstance(items, list):
                raise ValueError("no 'entries' list")
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            self.corrupt = True
            self.events.log(
                "warning",
                f"the deployment journal {self.path} is unreadable ({exc}); treating it as "
                f"empty, so nothing counts as installed (it is kept as {self.path}.corrupt)",
            )
            return []
        entries = [_entry(item) for item in items]
        skipped = sum(1 for entry in entries if entry is None)
        if skipped:
            self.events.log("warning", f"ignored {skipped} malformed entry(ies) in {self.path}")
        return [entry for entry in entries if entry is not None]

    def write(self, entries: list[Entry]) -> None:
        """Replace the journal (call inside ``locked``)."""
        if self.corrupt and os.path.exists(self.path):
            with contextlib.suppress(OSError):
                shutil.copyfile(self.path, self.path + ".corrupt")
        document = {"version": VERSION, "entries": [asdict(entry) for entry in entries]}
        data = (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            raise RunnerError(
                f"cannot write the deployment journal: {describe_os_error(exc)}",
                hint="check that the agent's user may write to that folder",
            ) from exc
        self.corrupt = False

    @contextlib.contextmanager
    def locked(self) -> Iterator[list[Entry]]:
        """Hold the journal's lock; yield the entries to change in place; write them back."""
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            lock = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise RunnerError(
                f"cannot lock the deployment journal: {describe_os_error(exc)}",
                hint="check that the agent's user may write to that folder",
            ) from exc
        try:
            _flock(lock)
            entries = self.read()
            yield entries
            self.write(entries)
        finally:
            os.close(lock)  # closing releases the lock

    def append(self, entry: Entry) -> None:
        with self.locked() as entries:
            entries.append(entry)


def _flock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, writes stay atomic
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def installed(entries: list[Entry], wanted: Entry) -> Entry | None:
    """The latest successful entry for the same release whose folder still exists."""
    for entry in reversed(entries):
        if entry.success and entry.same_release(wanted):
            folder = entry.installed_to or entry.extracted_to
            if folder and os.path.isdir(folder):
                return entry
    return None
