"""Reading what a deployment needs from the database, once, before it starts (blocking: the
handler calls :func:`load` in a worker thread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from octo_appliance.db import (
    Deployment,
    Environment,
    Project,
    Release,
    Target,
    TargetEnvironment,
    TargetRole,
)
from octo_appliance.db.packages import Package, ReleasePackage
from octo_appliance.engine.deployments.plan import TargetInfo
from octo_appliance.engine.deployments.spec import DeploymentOptions, SpecError, StepSpec
from octo_appliance.engine.releases import open_release_variables
from octo_appliance.engine.targets import address_of
from octo_appliance.engine.variables import ScopedValue, load_snapshot
from octo_appliance.feed.names import display_name
from octo_appliance.steps.base import PackageInfo
from octo_appliance.vault import Vault


@dataclass(frozen=True)
class Loaded:
    deployment_id: str
    project: tuple[str, str]
    environment: tuple[str, str]
    release: tuple[str, str]
    steps: list[StepSpec]
    variables: list[ScopedValue]
    targets: list[TargetInfo]
    #: ``(step name, package id)`` -> the version the release pinned, still in the feed
    packages: dict[tuple[str, str], PackageInfo] = field(default_factory=dict)
    #: ``(step name, package id)`` -> the version pinned whose package the feed lost since
    lost_packages: dict[tuple[str, str], str] = field(default_factory=dict)

    def package_problem(self, step: str, package_id: str) -> str:
        lost = self.lost_packages.get((step, package_id))
        if lost is not None:
            return (
                f"package {package_id} {lost}, pinned by release {self.release[1]}, is no "
                "longer in the feed; push it again, or create a new release"
            )
        return (
            f"release {self.release[1]} pinned no version of package {package_id} (the "
            "process changed after the release was created?); create a new release"
        )


def release_packages(
    release_id: str,
) -> tuple[dict[tuple[str, str], PackageInfo], dict[tuple[str, str], str]]:
    """The release's pinned package versions, joined with the feed (which may have lost some:
    a forced delete)."""

    found: dict[tuple[str, str], PackageInfo] = {}
    lost: dict[tuple[str, str], str] = {}
    for pin in ReleasePackage.select().where(ReleasePackage.release == release_id):
        row = Package.get_or_none(
            (Package.package_id == pin.package_id)
            & (Package.version == pin.version)
            & (Package.sha256 == pin.sha256)
        )
        key = (pin.step, pin.package_id)
        if row is None:
            lost[key] = pin.version
            continue
        found[key] = PackageInfo(
            package_id=row.package_id,
            version=row.version,
            sha256=row.sha256,
            size=int(row.size),
            format=row.format,
            file_name=display_name(row.package_id, row.version, row.format),
            id=row.id,
        )
    return found, lost


def open_sensitive(vault: Vault, release: Release) -> dict[str, str]:
    """The release's sensitive values, ``{"<index in variables_snapshot>": value}``
    (opened by :func:`octo_appliance.engine.releases.open_release_variables`)."""
    opened = open_release_variables(vault, release)
    return {
        str(index): str(item["value"])
        for index, item in enumerate(opened)
        if item.get("sensitive") and item.get("value") is not None
    }


def environment_targets(environment_id: str) -> list[TargetInfo]:
    """The environment's enabled targets with their roles, by name."""
    rows = list(
        Target.select()
        .join(TargetEnvironment)
        .where((TargetEnvironment.environment == environment_id) & (Target.disabled == False))  # noqa: E712
    )
    roles: dict[str, set[str]] = {}
    if rows:
        links: Any = (
            TargetRole.select(TargetRole.target, TargetRole.role)
            .where(TargetRole.target.in_([t.id for t in rows]))
            .tuples()
        )
        for target_id, role in links:
            roles.setdefault(target_id, set()).add(role)
    return sorted(
        (
            TargetInfo(
                id=t.id,
                name=t.name,
                roles=frozenset(roles.get(t.id, ())),
                health_status=t.health_status,
                address=address_of(t),
            )
            for t in rows
        ),
        key=lambda t: t.name,
    )


def load(vault: Vault, options: DeploymentOptions) -> Loaded:
    release = Release.get_or_none(Release.id == options.release_id)
    if release is None:
        raise SpecError(f"release {options.release_id} no longer exists")
    environment = Environment.get_or_none(Environment.id == options.environment_id)
    if environment is None:
        raise SpecError(f"environment {options.environment_id} no longer exists")
    project: Project = release.project
    if Deployment.get_or_none(Deployment.id == options.deployment_id) is None:
        raise SpecError(f"deployment {options.deployment_id} no longer exists")
    steps = [StepSpec.from_snapshot(i, raw) for i, raw in enumerate(release.process_snapshot)]
    variables = load_snapshot(release.variables_snapshot or [], open_sensitive(vault, release))
    packages, lost = release_packages(release.id)
    return Loaded(
        deployment_id=options.deployment_id,
        project=(project.id, project.name),
        environment=(environment.id, environment.name),
        release=(release.id, release.version),
        steps=steps,
        variables=variables,
        targets=environment_targets(environment.id),
        packages=packages,
        lost_packages=lost,
    )
