"""A new task: the one parameter set that creates it, and the row it is stored as.

:func:`create_task` inserts the queued row; :meth:`TaskEngine.enqueue` (which also wakes the
engine) and the API's ``enqueue_for_request`` (which also records the caller) take exactly its
parameters, :class:`TaskOptions` being the optional ones, so the three cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, TypedDict, Unpack

from octo_appliance.db.base import new_id
from octo_appliance.db.tasks import ServerTask
from octo_appliance.vault import Vault


class TaskOptions(TypedDict, total=False):
    """A new task's optional fields (each a column of ``server_task``), one parameter set for
    :func:`create_task`, :meth:`TaskEngine.enqueue` and the API's ``enqueue_for_request``."""

    created_by_id: str | None
    created_by_name: str
    environment_id: str | None
    project_id: str | None
    #: seconds the task may run; None: no limit
    timeout_seconds: int | None
    #: naive UTC; the task is not claimed before it
    not_before: datetime | None


class Enqueue(Protocol):
    """What queues a task and returns its id: :meth:`TaskEngine.enqueue`, or the API's
    request-bound version."""

    def __call__(
        self,
        kind: str,
        description: str,
        arguments: Mapping[str, Any] | None = None,
        sensitive_arguments: Mapping[str, Any] | None = None,
        **options: Unpack[TaskOptions],
    ) -> str: ...


def create_task(
    vault: Vault,
    kind: str,
    description: str,
    arguments: Mapping[str, Any] | None = None,
    sensitive_arguments: Mapping[str, Any] | None = None,
    **options: Unpack[TaskOptions],
) -> str:
    """Insert a queued task (not claimed before ``not_before``, naive UTC, if given);
    sensitive arguments are sealed to the new row."""
    if not kind:
        raise ValueError("a task needs a kind")
    unknown = set(options) - TaskOptions.__optional_keys__
    if unknown:  # peewee would silently drop them
        raise TypeError(f"unknown task options: {', '.join(sorted(unknown))}")
    timeout_seconds = options.get("timeout_seconds")
    if timeout_seconds is not None and timeout_seconds <= 0:
        raise ValueError("a task timeout must be positive")
    task_id = new_id(ServerTask.id_prefix)
    sealed = None
    if sensitive_arguments:
        sealed = vault.seal(
            json.dumps(dict(sensitive_arguments)), ServerTask(id=task_id).aad("sealed_arguments")
        )
    ServerTask.create(
        id=task_id,
        kind=kind,
        description=description,
        arguments=dict(arguments or {}),
        sealed_arguments=sealed,
        **{"created_by_name": "", **options},
    )
    return task_id
