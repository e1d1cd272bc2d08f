"""Lifecycle rules: which environments a release may be deployed to, and what comes next.

A lifecycle is an ordered list of phases, each a set of environments with a minimum number of
them (0 = all) that must hold a successful deployment of a release before the release may enter
the next phase. A release carries its phases as they were when it was created
(``Release.lifecycle_snapshot``), so editing a lifecycle never reorders existing releases.

A project without a lifecycle uses the default one: one phase per environment, in environment
sort order (then name), each needing its environment. Rules, for a release and an environment:

- an environment in the first phase is always open;
- an environment in phase k+1 is open once every phase up to k is complete;
- an environment in no phase is never open.

Deployment state: the ``Deployment`` row mirrors its task; the executor writes the row's final
state. Until it does, the task's state stands in (so a task failed by a restart, or canceled
before it started, still counts as finished here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from octo_appliance.db import (
    Deployment,
    Environment,
    Lifecycle,
    ProjectSettings,
    Release,
    database_proxy,
)
from octo_appliance.db.base import fk_id, iso, new_id, tuples, utcnow
from octo_appliance.db.connection import write_transaction
from octo_appliance.db.tasks import FINAL_STATES, SUCCESS, ServerTask
from octo_appliance.engine.tasks.creation import Enqueue

#: the task kind the deployment executor registers
DEPLOYMENT_TASK_KIND = "deployment"


# ---------------------------------------------------------------- peewee helpers


# ---------------------------------------------------------------- phases


def default_phases() -> list[dict[str, Any]]:
    """One phase per environment, in sort order then name; each needs its one environment."""
    rows = Environment.select(Environment.id, Environment.name).order_by(
        Environment.sort_order, Environment.name
    )
    return [
        {"name": name, "environments": [env_id], "minimum_environments": 0, "automatic": False}
        for env_id, name in tuples(rows)
    ]


def present_environments(env_ids: Iterable[str]) -> set[str]:
    """Which of ``env_ids`` still exist."""
    wanted = sorted(set(env_ids))
    if not wanted:
        return set()
    query = Environment.select(Environment.id).where(Environment.id.in_(wanted))
    return {row_id for (row_id,) in tuples(query)}


def filter_phases(phases: Iterable[dict[str, Any]], present: set[str]) -> list[dict[str, Any]]:
    """``phases`` keeping only environments in ``present`` (and phases left non-empty), each
    with all four keys."""
    result = []
    for phase in phases:
        envs = [env for env in phase.get("environments", []) if env in present]
        if envs:
            result.append(
                {
                    "name": str(phase.get("name", "")),
                    "environments": envs,
                    "minimum_environments": int(phase.get("minimum_environments") or 0),
                    "automatic": bool(phase.get("automatic", False)),
                }
            )
    return result


def existing_phases(phases: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``phases`` without environments deleted since (and without phases left empty)."""
    phases = list(phases)
    present = present_environments(env for p in phases for env in p.get("environments", []))
    return filter_phases(phases, present)


def project_phases(project_id: str) -> list[dict[str, Any]]:
    """The phases a new release of the project gets: its lifecycle's, or the default ones."""
    settings = ProjectSettings.get_or_none(ProjectSettings.project == project_id)
    lifecycle_id = fk_id(settings, "lifecycle") if settings is not None else None
    if lifecycle_id is None:
        return default_phases()
    lifecycle = Lifecycle.get_or_none(Lifecycle.id == lifecycle_id)
    return existing_phases(lifecycle.phases if lifecycle is not None else [])


def required_count(phase: dict[str, Any]) -> int:
    """How many of the phase's environments must succeed (``minimum_environments`` 0: all)."""
    envs = len(phase.get("environments", []))
    minimum = int(phase.get("minimum_environments") or 0)
    return envs if minimum <= 0 else min(minimum, envs)


def phase_complete(phase: dict[str, Any], succeeded: set[str]) -> bool:
    done = sum(1 for env in phase.get("environments", []) if env in succeeded)
    return done >= required_count(phase)


def phase_of(phases: Sequence[dict[str, Any]], environment_id: str) -> int | None:
    for index, phase in enumerate(phases):
        if environment_id in phase.get("environments", []):
            return index
    return None


# ---------------------------------------------------------------- deployment states


def effective_state(row_state: str, task_state: str | None) -> str:
    """The row's state once final (the executor wrote it), else the task's (if it exists)."""
    if row_state in FINAL_STATES or task_state is None:
        return row_state
    return task_state


@dataclass(frozen=True)
class DeploymentState:
    id: str
    release_id: str
    environment_id: str
    state: str
    created_at: datetime
    finished_at: datetime | None


def deployment_states(*conditions: Any) -> list[DeploymentState]:
    """Deployments matching ``conditions`` with their effective state, newest first; one query."""
    query = (
        Deployment.select(
            Deployment.id,
            Deployment.release,
            Deployment.environment,
            Deployment.state,
            Deployment.created_at,
            Deployment.finished_at,
            ServerTask.state,
            ServerTask.finished_at,
        )
        .join(
            ServerTask, join_type=peewee.JOIN.LEFT_OUTER, on=(ServerTask.id == Deployment.task_id)
        )
        .where(*conditions)
        .order_by(Deployment.created_at.desc(), Deployment.id.desc())
    )
    states = []
    for dep_id, rel, env, row_state, created, finished, task_state, task_finished in tuples(query):
        state = effective_state(row_state, task_state)
        if finished is None and state in FINAL_STATES:
            finished = task_finished
        states.append(DeploymentState(dep_id, rel, env, state, created, finished))
    return states


def succeeded_environments(release_id: str) -> set[str]:
    states = deployment_states(Deployment.release == release_id)
    return {d.environment_id for d in states if d.state == SUCCESS}


# ---------------------------------------------------------------- rules


def _env_names(env_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(env_ids))
    if not ids:
        return {}
    query = Environment.select(Environment.id, Environment.name).where(Environment.id.in_(ids))
    return dict(tuples(query))


def can_deploy(release: Release, environment_id: str) -> tuple[bool, str]:
    """May ``release`` be deployed to the environment now? ``(False, reason)`` when not.

    Environments deleted since the release was created no longer count in its phases.
    """
    phases = existing_phases(release.lifecycle_snapshot or [])
    names = _env_names([environment_id, *(e for p in phases for e in p.get("environments", []))])
    env_name = names.get(environment_id, environment_id)
    index = phase_of(phases, environment_id)
    if index is None:
        return False, (
            f"environment '{env_name}' is not in the lifecycle of release {release.version}"
        )
    if index == 0:
        return True, ""
    succeeded = succeeded_environments(release.id)
    for phase in phases[:index]:
        if phase_complete(phase, succeeded):
            continue
        envs = phase.get("environments", [])
        missing = required_count(phase) - sum(1 for env in envs if env in succeeded)
        waiting = ", ".join(names.get(env, env) for env in envs if env not in succeeded)
        return False, (
            f"release {release.version} cannot be deployed to '{env_name}' yet: phase "
            f"'{phase.get('name', '')}' needs a successful deployment to {missing} more "
            f"environment(s) of: {waiting}"
        )
    return True, ""


def next_automatic_environments(release_id: str, environment_id: str) -> list[str]:
    """Environments to deploy to automatically now that ``environment_id`` succeeded.

    Call after the deployment's row is marked ``success``. Returns the environments of the next
    phase when that phase is ``automatic`` and the phase of ``environment_id`` has just become
    complete (it was not complete without this deployment), leaving out environments that
    already have a deployment of this release (queued, running or done).
    """
    release = Release.get_or_none(Release.id == release_id)
    if release is None:
        return []
    phases = existing_phases(release.lifecycle_snapshot or [])
    index = phase_of(phases, environment_id)
    if index is None or index + 1 >= len(phases) or not phases[index + 1].get("automatic"):
        return []
    states = deployment_states(Deployment.release == release_id)
    succeeded = {d.environment_id for d in states if d.state == SUCCESS}
    latest_here = next(
        (d.id for d in states if d.environment_id == environment_id and d.state == SUCCESS), None
    )
    before = {d.environment_id for d in states if d.state == SUCCESS and d.id != latest_here}
    if not phase_complete(phases[index], succeeded) or phase_complete(phases[index], before):
        return []
    if any(not phase_complete(phase, succeeded) for phase in phases[:index]):
        return []
    started = {d.environment_id for d in states}
    return [env for env in phases[index + 1]["environments"] if env not in started]


# ---------------------------------------------------------------- queueing


def queue_deployment(
    enqueue: Enqueue,
    release: Release,
    environment: Environment,
    options: dict[str, Any],
    *,
    created_by: str = "",
    not_before: datetime | None = None,
) -> Deployment:
    """Create the deployment row and its task (``kind`` :data:`DEPLOYMENT_TASK_KIND`).

    ``options`` holds ``skip_steps``, ``targets``, ``exclude_targets`` (ids), ``guided_failure``
    and ``force``; the task's arguments carry them with ``deployment_id``, ``release_id``,
    ``environment_id``, ``project_id`` and, when given, ``not_before`` (ISO 8601 UTC): the
    executor must not start the deployment before then. Rules are the caller's to check.

    Both rows are written in one transaction (a savepoint inside the caller's): a task the
    engine can claim always finds its deployment row.
    """
    deployment_id = new_id(Deployment.id_prefix)
    project = release.project
    arguments = {
        "deployment_id": deployment_id,
        "release_id": release.id,
        "environment_id": environment.id,
        "project_id": project.id,
        **options,
    }
    if not_before is not None:
        arguments["not_before"] = iso(not_before)
    stored_options = dict(options)
    if not_before is not None:
        stored_options["queue_time"] = iso(not_before)
    with write_transaction(database_proxy.obj):
        task_id = enqueue(
            DEPLOYMENT_TASK_KIND,
            f"Deploy {project.name} {release.version} to {environment.name}",
            arguments,
            None,
            environment_id=environment.id,
            project_id=project.id,
            not_before=not_before,
        )
        deployment: Deployment = Deployment.create(
            id=deployment_id,
            release=release.id,
            project=project.id,
            environment=environment.id,
            task_id=task_id,
            options=stored_options,
            created_by=created_by,
            created_at=utcnow(),
        )
    return deployment


# ---------------------------------------------------------------- progress


def progress(release: Release) -> list[dict[str, Any]]:
    """Per environment of the release's lifecycle, in phase order: its phase, whether the
    release may be deployed there now (and why not) and the latest deployment there.

    ``[{"environment_id", "environment_name", "phase", "can_deploy", "reason",
    "deployment": {"id", "state", "created_at", "finished_at"} | None}]``; two queries.
    """
    phases = existing_phases(release.lifecycle_snapshot or [])
    names = _env_names(env for phase in phases for env in phase["environments"])
    states = deployment_states(Deployment.release == release.id)
    succeeded = {d.environment_id for d in states if d.state == SUCCESS}
    latest: dict[str, DeploymentState] = {}
    for state in states:
        latest.setdefault(state.environment_id, state)
    rows: list[dict[str, Any]] = []
    blocker = ""
    for index, phase in enumerate(phases):
        for env in phase["environments"]:
            last = latest.get(env)
            rows.append(
                {
                    "environment_id": env,
                    "environment_name": names.get(env, env),
                    "phase": phase.get("name", ""),
                    "can_deploy": not blocker,
                    "reason": (f"phase '{blocker}' is not complete" if blocker else None),
                    "deployment": None
                    if last is None
                    else {
                        "id": last.id,
                        "state": last.state,
                        "created_at": iso(last.created_at),
                        "finished_at": iso(last.finished_at),
                    },
                }
            )
        if not blocker and not phase_complete(phase, succeeded) and index + 1 < len(phases):
            blocker = phase.get("name", "")
    return rows
