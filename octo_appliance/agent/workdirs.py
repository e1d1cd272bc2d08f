"""Per-task work directories, and the only files ``files.fetch`` may hand out.

Every ``runner.run`` gets a fresh ``work/<task id>-<n>/`` (n counts up), so a retried step
never sees the leftovers of the previous attempt. ``files.fetch`` resolves a requested path
(symlinks included) and serves it only if the result still lies inside one of that task's
work dirs: ``..``, absolute paths elsewhere and symlinks pointing out are refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from octo_appliance.comms import CallFailed

_TASK_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_SUFFIX = re.compile(r"^-(\d+)$")


def check_task_id(value: object) -> str:
    if not isinstance(value, str) or not _TASK_ID.match(value):
        raise CallFailed(
            "bad_request",
            "task_id must be 1-100 letters, digits, '_', '.' or '-' (not starting with '.' or '-')",
            hint="send the server task's id",
        )
    return value


class WorkDirs:
    """The ``work/`` directory of one home."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, task_id: str) -> Path:
        """A new, empty work dir for ``task_id`` (mode 0700)."""
        task_id = check_task_id(task_id)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        n = max(self.attempts(task_id), default=0) + 1
        while True:
            path = self.root / f"{task_id}-{n}"
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                n += 1
                continue
            return path

    def attempts(self, task_id: str) -> list[int]:
        """The ``n`` of every existing work dir of ``task_id``, ascending."""
        found = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name.startswith(task_id + "-"):
                match = _SUFFIX.match(entry.name[len(task_id) :])
                if match and entry.is_dir(follow_symlinks=False):
                    found.append(int(match[1]))
        return sorted(found)

    def task_dirs(self, task_id: str) -> list[Path]:
        task_id = check_task_id(task_id)
        return [self.root / f"{task_id}-{n}" for n in self.attempts(task_id)]

    def resolve_file(self, task_id: str, requested: object) -> Path:
        """The real path of a file inside one of ``task_id``'s work dirs, or CallFailed.

        A relative path is taken from the task's latest work dir; an absolute one (as the
        runner's artifact events report them) must lie in any of them.
        """
        if not isinstance(requested, str) or not requested or "\x00" in requested:
            raise CallFailed("bad_request", "path must be a non-empty text", hint="send a path")
        dirs = self.task_dirs(task_id)
        if not dirs:
            raise CallFailed(
                "not_found",
                f"task {task_id} has no work dir on this agent",
                hint="fetch files only from tasks that ran here (work dirs may be cleaned)",
            )
        if ".." in Path(requested).parts:
            raise _outside(requested)
        candidate = Path(requested) if os.path.isabs(requested) else dirs[-1] / requested
        real = Path(os.path.realpath(candidate))
        if not any(_inside(real, Path(os.path.realpath(d))) for d in dirs):
            raise _outside(requested)
        if not real.is_file():
            raise CallFailed(
                "not_found",
                f"{requested!r} is not a file in task {task_id}'s work dir",
                hint="check the path the artifact event reported",
            )
        return real


def _inside(path: Path, directory: Path) -> bool:
    return path != directory and path.is_relative_to(directory)


def _outside(requested: str) -> CallFailed:
    return CallFailed(
        "forbidden_path",
        f"{requested!r} is outside the task's work dir",
        hint="only files inside the task's work dir can be fetched",
    )
