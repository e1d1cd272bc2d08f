"""Which package versions a release deploys (database work only; the API calls it).

A release pins one exact version of every feed package its process deploys (the ids come from
each step type's :meth:`~octo_appliance.steps.base.StepType.package_ids`): the version the
request names for that package (or for that step), otherwise the highest version in the feed.
The pins are rows of :class:`~octo_appliance.db.packages.ReleasePackage`, with the SHA-256, so
a version pushed again with ``replace`` is noticed, and the feed refuses to delete a pinned
version unless forced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from octo_appliance.db.base import new_id
from octo_appliance.db.packages import Package, ReleasePackage
from octo_appliance.exceptions import OctoError
from octo_appliance.feed.names import version_key
from octo_appliance.plugins import StepTypeRegistry

_LOWEST = (-1, 0, 0, 0, ())


@dataclass(frozen=True)
class PackageChoice:
    """``{"package": ID, "version": V, "step": NAME?}`` from a release request."""

    package: str
    version: str
    step: str | None = None


class PinProblem(OctoError):
    """One reason the release cannot be created, for the request's ``packages`` field."""


def packages_needed(
    steps: Iterable[Mapping[str, Any]], step_types: StepTypeRegistry
) -> list[tuple[str, str]]:
    """``(step name, package id)`` for every package the process deploys, in step order."""
    needed = []
    for step in steps:
        kind = step.get("type")
        if not isinstance(kind, str) or kind not in step_types:
            continue
        properties = dict(step.get("properties") or {})
        for package_id in step_types.get(kind)().package_ids(properties):
            needed.append((str(step.get("name")), package_id))
    return needed


def _versions(package_id: str) -> dict[str, Package]:
    return {row.version: row for row in Package.select().where(Package.package_id == package_id)}


def choose(
    needed: list[tuple[str, str]], choices: Iterable[PackageChoice]
) -> list[tuple[str, Package]]:
    """The feed row each ``(step, package id)`` pins; :class:`PinProblem` when one is missing."""
    choices = list(choices)
    known_ids = {package_id for _, package_id in needed}
    known_steps = {step for step, _ in needed}
    for choice in choices:
        if choice.package not in known_ids:
            raise PinProblem(
                f"no step of the process deploys package '{choice.package}'",
                hint="packages: " + (", ".join(sorted(known_ids)) or "none in this process"),
            )
        if choice.step is not None and choice.step not in known_steps:
            raise PinProblem(f"step '{choice.step}' deploys no package")
    pinned = []
    feed: dict[str, dict[str, Package]] = {}
    for step, package_id in needed:
        versions = feed.get(package_id)
        if versions is None:
            versions = feed[package_id] = _versions(package_id)
        wanted = next(
            (c.version for c in choices if c.package == package_id and c.step == step),
            next((c.version for c in choices if c.package == package_id and c.step is None), None),
        )
        if not versions:
            raise PinProblem(
                f"package '{package_id}' (step '{step}') has no version in the feed",
                hint=f"push one first: octo-appliance package push {package_id}.1.0.0.zip",
            )
        if wanted is None:
            best = max(versions, key=lambda v: version_key(v) or _LOWEST)
            pinned.append((step, versions[best]))
        elif wanted in versions:
            pinned.append((step, versions[wanted]))
        else:
            newest = sorted(versions, key=lambda v: version_key(v) or _LOWEST)[-5:]
            raise PinProblem(
                f"package '{package_id}' has no version {wanted} in the feed",
                hint="recent versions: " + ", ".join(reversed(newest)),
            )
    return pinned


def pin(release_id: str, pinned: list[tuple[str, Package]]) -> None:
    if not pinned:
        return
    for step, row in pinned:
        ReleasePackage.create(
            id=new_id(ReleasePackage.id_prefix),
            release=release_id,
            step=step,
            package_id=row.package_id,
            version=row.version,
            sha256=row.sha256,
        )


def pins_json(release_id: str, steps: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The release's pins in the order of its process steps."""
    order = {str(step.get("name")): index for index, step in enumerate(steps)}
    rows = ReleasePackage.select().where(ReleasePackage.release == release_id)
    pins = sorted(rows, key=lambda r: (order.get(r.step, len(order)), r.step, r.package_id))
    return [
        {"step": r.step, "package_id": r.package_id, "version": r.version, "sha256": r.sha256}
        for r in pins
    ]
