"""Retention: keep the last N releases of a project on this target, delete the rest.

Per environment of the project (a target in Test and Production keeps N releases of each),
the kept entries of the journal are, for each of the N releases most recently installed
successfully, its latest successful entry, plus the environment's newest entry whatever its
outcome (someone may be looking at a failure). Every other entry of the project is removed
from the journal, and its release folder is deleted, except when:

- the folder is not inside the applications folder (a custom ``install_dir`` is never
  deleted: releases share it),
- a kept entry of any project uses it, or a folder inside or around it,
- deleting fails (a warning; the entry stays, so the next run tries again).

Cached packages (``<cache_dir>/<sha256>``) of removed entries are deleted when no remaining
entry references the same hash; ``cache_dir/index.json`` is left alone (the agent tolerates
index entries whose file is gone). Empty ``<environment>/<package>`` folders left behind are
removed. Recency is the order of the journal, which is the order deployments finished in.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field

from ..protocol import EventWriter
from .files import describe_os_error, is_within
from .journal import Entry, Journal

_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass
class Cleanup:
    kept: int = 0
    removed: int = 0
    folders: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)


def kept_indexes(entries: list[Entry], indexes: list[int], keep: int) -> set[int]:
    """Which of ``indexes`` (one project's entries, all environments) to keep."""
    by_environment: dict[str, list[int]] = {}
    for index in indexes:
        by_environment.setdefault(entries[index].environment.casefold(), []).append(index)
    kept: set[int] = set()
    for group in by_environment.values():
        latest: dict[str, int] = {}
        for index in group:
            if entries[index].success:
                latest[entries[index].release] = index  # later entries overwrite
        newest_releases = sorted(latest.values(), reverse=True)[:keep]
        kept.update(newest_releases)
        kept.add(max(group))
    return kept


def apply(
    journal: Journal,
    applications_dir: str,
    cache_dir: str,
    project: str,
    keep: int,
    events: EventWriter,
    *,
    environment: str | None = None,
) -> Cleanup:
    """Apply the policy to ``project`` (a name or id), in one ``environment`` or all."""
    cleanup = Cleanup()
    with journal.locked() as entries:
        mine = [
            index
            for index, entry in enumerate(entries)
            if (entry.project_id == project or entry.project.casefold() == project.casefold())
            and (environment is None or entry.environment.casefold() == environment.casefold())
        ]
        kept = kept_indexes(entries, mine, keep)
        doomed = {index for index in mine if index not in kept}
        protected = [
            os.path.realpath(path)
            for index, entry in enumerate(entries)
            if index not in doomed
            for path in entry.folders()
        ]
        failed = {
            index
            for index in sorted(doomed)
            if not _delete_folder(entries[index], applications_dir, protected, cleanup, events)
        }
        cleanup.removed = len(doomed) - len(failed)
        cleanup.kept = len(mine) - cleanup.removed
        survivors = [e for i, e in enumerate(entries) if i not in doomed or i in failed]
        referenced = {entry.sha256 for entry in survivors}
        for sha256 in sorted({entries[i].sha256 for i in doomed - failed} - referenced):
            _delete_package(cache_dir, sha256, cleanup, events)
        entries[:] = survivors
    scope = f"in {environment}" if environment else "per environment"
    events.log(
        "info",
        f"Retention for {project} (keep {keep} release(s) {scope}): kept {cleanup.kept} "
        f"entries, removed {cleanup.removed}, deleted {len(cleanup.folders)} folder(s) and "
        f"{len(cleanup.packages)} cached package(s)",
    )
    return cleanup


def _delete_folder(
    entry: Entry,
    applications_dir: str,
    protected: list[str],
    cleanup: Cleanup,
    events: EventWriter,
) -> bool:
    """Delete ``entry``'s release folder when allowed; False only when deleting failed."""
    folder = entry.extracted_to
    if not folder or not os.path.isabs(folder) or not os.path.lexists(folder):
        return True
    root = os.path.realpath(applications_dir)
    real = os.path.realpath(os.path.dirname(folder))
    real = os.path.join(real, os.path.basename(folder))
    if real == root or not is_within(real, root):
        events.log("verbose", f"Retention: {folder} is outside {applications_dir}: kept")
        return True
    if any(is_within(real, p) or is_within(p, real) for p in protected):
        events.log("verbose", f"Retention: {folder} is used by a kept release: kept")
        return True
    try:
        if os.path.islink(real) or not os.path.isdir(real):
            os.unlink(real)
        else:
            shutil.rmtree(real)
    except OSError as exc:
        events.log("warning", f"Retention could not delete {folder}: {describe_os_error(exc)}")
        return False
    cleanup.folders.append(folder)
    events.log("info", f"Retention: deleted {folder} (release {entry.release})")
    parent = os.path.dirname(real)
    while parent != root and is_within(parent, root):
        try:
            os.rmdir(parent)  # only when empty
        except OSError:
            break
        parent = os.path.dirname(parent)
    return True


def _delete_package(cache_dir: str, sha256: str, cleanup: Cleanup, events: EventWriter) -> None:
    if not _SHA256.match(sha256):
        return
    path = os.path.join(cache_dir, sha256)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        events.log("warning", f"Retention could not delete {path}: {describe_os_error(exc)}")
        return
    cleanup.packages.append(sha256)
    events.log("verbose", f"Retention: deleted the cached package {sha256}")
