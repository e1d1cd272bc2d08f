"""Releases: versions, and the snapshots that make a release immutable (database work only).

A release copies, when it is created, everything a deployment of it needs: the process steps
(and the process version they came from), the lifecycle phases (resolved: the project's
lifecycle or the default one) and every variable: the project's own, then those of each
library set the project includes, in the project's order. Later edits to any of these change
nothing in the release; :func:`refresh_variables` replaces the variables copy on request.

Each snapshot variable is ``{"name", "value", "sensitive", "scope", "source"}`` with ``source``
``"project"`` or ``"library:<set name>"``. A sensitive variable's ``value`` is None in the
snapshot; its value is sealed with the others in ``Release.sealed_variables`` as the JSON
object ``{"<index in the snapshot>": value}``, bound to the release row and column.
:func:`open_release_variables` gives the list back with those values filled in.

Versions are semantic versions (``MAJOR.MINOR.PATCH``, optional ``-prerelease`` and
``+build``). Without one, the next version takes the highest existing version of the project
(by semantic-version precedence), drops its prerelease and build parts and adds one to the
patch number; a project's first generated version is ``0.0.1``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from octo_appliance.db import (
    LibraryVariable,
    LibraryVariableSet,
    Project,
    ProjectProcess,
    ProjectSettings,
    Release,
    Variable,
)
from octo_appliance.db.base import fk_id, new_id, tuples, utcnow
from octo_appliance.engine.lifecycles import project_phases
from octo_appliance.feed.names import version_key
from octo_appliance.vault import Vault

FIRST_VERSION = "0.0.1"
SCOPE_KEYS = ("environments", "roles", "targets", "steps")
SEALED_COLUMN = "sealed_variables"

# ---------------------------------------------------------------- versions


def next_version(existing: Iterable[str]) -> str:
    """The patch after the highest semantic version in ``existing`` (``0.0.1`` if none)."""
    taken = set(existing)
    keys = [key for key in (version_key(v) for v in taken) if key is not None]
    if not keys:
        candidate = FIRST_VERSION
    else:
        major, minor, patch, *_ = max(keys)
        candidate = f"{major}.{minor}.{patch + 1}"
    while candidate in taken:  # only if a build-tagged twin exists: keep counting
        major_s, minor_s, patch_s = candidate.split(".")
        candidate = f"{major_s}.{minor_s}.{int(patch_s) + 1}"
    return candidate


def project_versions(project_id: str) -> list[str]:
    query = Release.select(Release.version).where(Release.project == project_id)
    return [version for (version,) in tuples(query)]


def version_taken(project_id: str, version: str) -> bool:
    query = Release.select(Release.id).where(
        Release.project == project_id, Release.version == version
    )
    return bool(query.exists())


# ---------------------------------------------------------------- snapshots


def _scope(scope: dict[str, Any] | None) -> dict[str, list[str]]:
    scope = scope or {}
    return {key: list(scope.get(key, [])) for key in SCOPE_KEYS}


def _collect(
    vault: Vault,
    rows: Iterable[Any],
    source: str,
    into: list[dict[str, Any]],
    secrets: dict[str, str],
) -> None:
    for row in rows:
        index = len(into)
        into.append(
            {
                "name": row.name,
                "value": None if row.sensitive else row.value,
                "sensitive": bool(row.sensitive),
                "scope": _scope(row.scope),
                "source": source,
            }
        )
        if row.sensitive and row.sealed_value is not None:
            secrets[str(index)] = vault.open(row.sealed_value, row.aad("sealed_value"))


def collect_variables(vault: Vault, project_id: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The project's variables then its library sets', and the sensitive values by index."""
    variables: list[dict[str, Any]] = []
    secrets: dict[str, str] = {}
    own = Variable.select().where(Variable.project == project_id).order_by(Variable.position)
    _collect(vault, own, "project", variables, secrets)
    settings = ProjectSettings.get_or_none(ProjectSettings.project == project_id)
    set_ids = list(settings.library_sets or []) if settings is not None else []
    if set_ids:
        sets = LibraryVariableSet.select(LibraryVariableSet.id, LibraryVariableSet.name)
        names: dict[str, str] = dict(tuples(sets.where(LibraryVariableSet.id.in_(set_ids))))
        rows: dict[str, list[LibraryVariable]] = {set_id: [] for set_id in set_ids}
        query = (
            LibraryVariable.select()
            .where(LibraryVariable.library_set.in_(set_ids))
            .order_by(LibraryVariable.position)
        )
        for row in query:
            rows[fk_id(row, "library_set")].append(row)
        for set_id in set_ids:
            if set_id in names:  # a set deleted since is simply gone
                _collect(vault, rows[set_id], f"library:{names[set_id]}", variables, secrets)
    return variables, secrets


def _seal(vault: Vault, release_id: str, secrets: dict[str, str]) -> str | None:
    if not secrets:
        return None
    return vault.seal(json.dumps(secrets), Release(id=release_id).aad(SEALED_COLUMN))


def create_release(
    vault: Vault, project: Project, version: str, notes: str = "", created_by: str = ""
) -> Release:
    """Snapshot the process, lifecycle and variables into a new release (rules: the caller's)."""
    release_id = new_id(Release.id_prefix)
    process = ProjectProcess.get_or_none(ProjectProcess.project == project.id)
    variables, secrets = collect_variables(vault, project.id)
    release: Release = Release.create(
        id=release_id,
        project=project.id,
        version=version,
        notes=notes,
        process_snapshot=list(process.steps or []) if process is not None else [],
        process_version=process.version if process is not None else 0,
        variables_snapshot=variables,
        sealed_variables=_seal(vault, release_id, secrets),
        lifecycle_snapshot=project_phases(project.id),
        created_at=utcnow(),
        created_by=created_by,
    )
    return release


def refresh_variables(vault: Vault, release: Release) -> None:
    """Replace the release's variables snapshot with the project's variables as they are now."""
    variables, secrets = collect_variables(vault, fk_id(release, "project"))
    release.variables_snapshot = variables
    release.sealed_variables = _seal(vault, release.id, secrets)
    release.save(only=[Release.variables_snapshot, Release.sealed_variables])


def open_release_variables(vault: Vault, release: Release) -> list[dict[str, Any]]:
    """The release's variables snapshot with sensitive values unsealed (for the executor).

    Each item is ``{"name", "value", "sensitive", "scope", "source"}``; never send the
    sensitive values anywhere but to the runner (masked in the task log).
    """
    variables = [dict(item) for item in release.variables_snapshot or []]
    if release.sealed_variables:
        secrets = json.loads(vault.open(release.sealed_variables, release.aad(SEALED_COLUMN)))
        for index, value in secrets.items():
            variables[int(index)]["value"] = value
    return variables
