"""The feed's database side: record a received package, find what uses a version, delete.

Synchronous peewee work for a worker thread, inside the caller's transaction. Files are only
moved here (a received package is promoted before its row is written); removing a replaced or
deleted package's file is the caller's job once the transaction committed, so a rollback never
leaves a row without its file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee

from octo_appliance.db import Project, Release
from octo_appliance.db.base import tuples, utcnow
from octo_appliance.db.packages import Package, ReleasePackage
from octo_appliance.exceptions import Conflict
from octo_appliance.feed.sealed_files import ReceivedPackage, promote


@dataclass(frozen=True)
class Saved:
    package: Package
    created: bool
    #: the replaced version's sealed file (remove it after the commit), or None
    old_file: str | None = None
    old_sha256: str | None = None
    #: the releases that pinned the replaced content (a forced replace), for the audit
    broken_releases: tuple[str, ...] = ()


def find_package(package_id: str, version: str) -> Package | None:
    return Package.get_or_none((Package.package_id == package_id) & (Package.version == version))


def _locked(package_id: str, version: str) -> Package | None:
    """The row, locked until the transaction ends on PostgreSQL (SQLite's write transaction
    already excludes other writers), so two concurrent replaces cannot both delete the same
    old file and leave one new file unreferenced."""
    query: Any = Package.select().where(
        (Package.package_id == package_id) & (Package.version == version)
    )
    if isinstance(Package._meta.database.obj, peewee.PostgresqlDatabase):
        query = query.for_update()
    return query.first()  # type: ignore[no-any-return]


def exists_conflict(package_id: str, version: str) -> Conflict:
    return Conflict(
        f"package {package_id} version {version} is already in the feed",
        hint="pass replace=true to overwrite it (POST /api/v1/packages?replace=true), "
        "or upload a new version",
    )


def refuse_existing(package_id: str, version: str, replace: bool) -> None:
    """409 when the version exists and the caller did not ask to replace it."""
    if not replace and find_package(package_id, version) is not None:
        raise exists_conflict(package_id, version)


def save_package(
    data_dir: Path,
    received: ReceivedPackage,
    *,
    replace: bool,
    uploaded_by: str,
    force: bool = False,
) -> Saved:
    """Promote the received file and write its row. 409 if the version exists and ``replace``
    is off; 409 too if replacing it changes content that releases pinned (they could not be
    deployed any more) and ``force`` is off. Identical content replaces freely."""
    name = received.name
    existing = _locked(name.package_id, name.version)
    if existing is not None and not replace:
        raise exists_conflict(name.package_id, name.version)
    broken: list[dict[str, str]] = []
    if existing is not None and existing.sha256 != received.sha256:
        broken = releases_using(name.package_id, name.version)
        if broken and not force:
            raise in_use_conflict(existing, broken, replacing=True)
    promote(data_dir, received)
    fields: dict[str, Any] = {
        "format": name.format,
        "sha256": received.sha256,
        "size": received.size,
        "file_name": received.file_name,
        "uploaded_at": utcnow(),
        "uploaded_by": uploaded_by,
    }
    if existing is None:
        row = Package.create_new(package_id=name.package_id, version=name.version, **fields)
        return Saved(row, created=True)
    old_file, old_sha = existing.file_name, existing.sha256
    for key, value in fields.items():
        setattr(existing, key, value)
    existing.save()
    labels = tuple(f"{item['project']} {item['release']}" for item in broken)
    return Saved(existing, False, old_file, old_sha, labels)


def releases_using(package_id: str, version: str) -> list[dict[str, str]]:
    """``[{"project", "release", "release_id", "step"}]`` for the releases that deploy it."""
    query = (
        ReleasePackage.select(ReleasePackage.step, Release.id, Release.version, Project.name)
        .join(Release, on=(ReleasePackage.release == Release.id))
        .join(Project, on=(Release.project == Project.id))
        .where((ReleasePackage.package_id == package_id) & (ReleasePackage.version == version))
        .order_by(Project.name, Release.created_at)
    )
    seen: dict[str, dict[str, str]] = {}
    for step, release_id, release_version, project_name in tuples(query):
        seen.setdefault(
            release_id,
            {
                "project": project_name,
                "release": release_version,
                "release_id": release_id,
                "step": step,
            },
        )
    return list(seen.values())


def in_use_conflict(
    package: Package, users: list[dict[str, str]], *, replacing: bool = False
) -> Conflict:
    """409 for deleting (or replacing with other content) a version these releases pinned."""
    named = ", ".join(f"{item['project']} {item['release']}" for item in users[:20])
    more = f" and {len(users) - 20} more" if len(users) > 20 else ""
    if replacing:
        hint = (
            "push the new content as a new version, or pass force=true with replace=true to "
            "overwrite it anyway (those releases then cannot be deployed: the content they "
            "pinned is gone)"
        )
    else:
        hint = (
            "delete those releases first, or pass force=true to delete it anyway (those "
            "releases then cannot be deployed)"
        )
    return Conflict(
        f"package {package.package_id} version {package.version} is used by releases: "
        f"{named}{more}",
        details=users,
        hint=hint,
    )
