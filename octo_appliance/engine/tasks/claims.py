"""Claiming server tasks: which node runs which task, safely between nodes on one database.

A task with ``not_before`` in the future is not a candidate (it stays ``queued`` and holds no
slot); :func:`next_due` tells the claim loop when to look again.

Claiming is safe between nodes sharing one database: a task moves ``queued -> executing`` only
through ``UPDATE ... WHERE state = 'queued'``, so of two claimers exactly one changes the row.
On PostgreSQL the candidates are also read ``FOR UPDATE SKIP LOCKED`` so claimers do not queue
behind each other; on SQLite the claim runs in a ``BEGIN IMMEDIATE`` transaction, because a
deferred one that read first and writes second fails at once (not after the busy timeout)
when another connection wrote in between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from octo_appliance.db.base import utcnow
from octo_appliance.db.connection import write_transaction
from octo_appliance.db.tasks import (
    EXECUTING,
    FAILED,
    QUEUED,
    ServerTask,
)
from octo_appliance.engine.tasks.store import append_line_now, last_seq, open_arguments
from octo_appliance.exceptions import VaultError
from octo_appliance.vault import Vault


@dataclass(frozen=True)
class ClaimedTask:
    """What the executor needs of a task it claimed (sensitive arguments already opened)."""

    id: str
    kind: str
    description: str
    arguments: dict[str, Any]
    sensitive_arguments: dict[str, Any]
    environment_id: str | None
    project_id: str | None
    created_by_name: str
    timeout_seconds: int | None
    #: the highest log sequence number already stored for the task (0: none)
    last_seq: int
    cancel_requested: bool = False
    canceled_by: str = ""


def _due(now: datetime) -> Any:
    return (ServerTask.state == QUEUED) & (
        ServerTask.not_before.is_null() | (ServerTask.not_before <= now)
    )


def next_due(now: datetime) -> datetime | None:
    """When the earliest queued task that is not due yet becomes due (None: there is none)."""
    moment: datetime | None = (
        ServerTask.select(peewee.fn.MIN(ServerTask.not_before))
        .where((ServerTask.state == QUEUED) & (ServerTask.not_before > now))
        .scalar()
    )
    return moment


def claim_tasks(
    db: peewee.Database,
    vault: Vault,
    node: str,
    limit: int,
    lease: Callable[[], bool] | None = None,
) -> list[ClaimedTask]:
    """Claim up to ``limit`` due queued tasks for ``node``, oldest first (a scheduled task
    counts from its time); none unless ``lease()``, asked inside the claim's transaction."""
    if limit <= 0:
        return []
    now = utcnow()
    with write_transaction(db):
        if lease is not None and not lease():
            return []
        candidates: Any = (
            ServerTask.select(ServerTask.id)
            .where(_due(now))
            .order_by(
                peewee.fn.COALESCE(ServerTask.not_before, ServerTask.created_at), ServerTask.id
            )
            .limit(limit)
        )
        if isinstance(db, peewee.PostgresqlDatabase):
            candidates = candidates.for_update(skip_locked=True)
        claimed_ids = []
        for (task_id,) in candidates.tuples():
            changed = (
                ServerTask.update(state=EXECUTING, node=node, started_at=now)
                .where((ServerTask.id == task_id) & _due(now))
                .execute()
            )
            if changed == 1:
                claimed_ids.append(task_id)
        if not claimed_ids:
            return []
        rows = list(
            ServerTask.select()
            .where(ServerTask.id.in_(claimed_ids))
            .order_by(ServerTask.created_at, ServerTask.id)
        )
    claimed = []
    for row in rows:
        try:
            sensitive = open_arguments(vault, row)
        except VaultError as exc:  # fail it now rather than leave it claimed and not running
            message = f"its sensitive arguments do not decrypt: {exc.message}"
            with write_transaction(db):
                ServerTask.update(state=FAILED, error=message, finished_at=utcnow()).where(
                    (ServerTask.id == row.id) & (ServerTask.state == EXECUTING)
                ).execute()
                append_line_now(db, vault, row.id, "error", message)
            continue
        claimed.append(
            ClaimedTask(
                id=row.id,
                kind=row.kind,
                description=row.description,
                arguments=dict(row.arguments or {}),
                sensitive_arguments=sensitive,
                environment_id=row.environment_id,
                project_id=row.project_id,
                created_by_name=row.created_by_name,
                timeout_seconds=row.timeout_seconds,
                last_seq=last_seq(row.id),
                cancel_requested=row.cancel_requested,
                canceled_by=row.canceled_by,
            )
        )
    return claimed


def release_tasks(db: peewee.Database, node: str, task_ids: Sequence[str]) -> None:
    """Put tasks this node claimed but never started back in the queue."""
    if not task_ids:
        return
    with write_transaction(db):
        ServerTask.update(state=QUEUED, node="", started_at=None).where(
            ServerTask.id.in_(list(task_ids))
            & (ServerTask.state == EXECUTING)
            & (ServerTask.node == node)
        ).execute()


def release_unstarted(db: peewee.Database, node: str, running: Sequence[str]) -> list[str]:
    """Put back in the queue every task ``executing`` under ``node`` that is not in
    ``running``: a claim whose commit was lost with the connection took them, and the
    engine never started them. Returns their ids."""
    with write_transaction(db):
        condition = (ServerTask.state == EXECUTING) & (ServerTask.node == node)
        if running:
            condition &= ServerTask.id.not_in(list(running))
        query: Any = ServerTask.select(ServerTask.id).where(condition).tuples()
        ids: list[str] = [task_id for (task_id,) in query]
        if ids:
            ServerTask.update(state=QUEUED, node="", started_at=None).where(
                condition & ServerTask.id.in_(ids)
            ).execute()
    return ids
