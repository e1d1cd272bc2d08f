"""Automatic deployments: after a success, the lifecycle may promote the release onward.

:func:`octo_appliance.engine.lifecycles.next_automatic_environments` decides where; each is
queued with :func:`octo_appliance.engine.lifecycles.queue_deployment`, exactly as
``POST /api/v1/deployments`` queues one (deployment row and task in one transaction).
"""

from __future__ import annotations

from octo_appliance.db import Environment, Release, database_proxy
from octo_appliance.db.connection import write_transaction
from octo_appliance.engine import lifecycles
from octo_appliance.engine.tasks.creation import Enqueue

AUTOMATIC_BY = "lifecycle (automatic)"
DEFAULT_OPTIONS = {
    "skip_steps": [],
    "targets": [],
    "exclude_targets": [],
    "guided_failure": False,
    "force": False,
}


def promote(enqueue: Enqueue, release_id: str, environment_id: str) -> list[tuple[str, str]]:
    """Queue the automatic deployments due after this success (blocking);
    ``[(deployment id, task id)]``."""
    queued = []
    for next_id in lifecycles.next_automatic_environments(release_id, environment_id):
        with write_transaction(database_proxy.obj):
            release = Release.get_by_id(release_id)
            environment = Environment.get_by_id(next_id)
            deployment = lifecycles.queue_deployment(
                enqueue, release, environment, dict(DEFAULT_OPTIONS), created_by=AUTOMATIC_BY
            )
        queued.append((str(deployment.id), str(deployment.task_id)))
    return queued
