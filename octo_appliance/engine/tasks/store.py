"""Synchronous database work for server tasks: log lines, target results, finishing,
recovery, cancellation. Callers keep it off the event loop. Claiming is in ``claims.py``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee

from octo_appliance.db.base import new_id, utcnow
from octo_appliance.db.connection import write_transaction
from octo_appliance.db.tasks import (
    CANCELED,
    EXECUTING,
    FAILED,
    FINAL_TARGET_STATES,
    QUEUED,
    ServerTask,
    TaskLogLine,
    TaskTargetResult,
    log_line_aad,
    log_line_id,
)
from octo_appliance.transports.relay.wire import LOG_CHANNEL
from octo_appliance.vault import Vault


@dataclass(frozen=True)
class OutputVariable:
    name: str
    value: str
    sensitive: bool = False


@dataclass
class TargetResult:
    """A target's outcome as the executor keeps it in memory and saves it."""

    target_id: str
    target_name: str
    state: str = "pending"
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    output_variables: list[OutputVariable] = field(default_factory=list)
    message: str = ""


@dataclass(frozen=True)
class StoredLine:
    """A log line to insert: already masked, not yet sealed."""

    task_id: str
    seq: int
    level: str
    message: str
    occurred_at: datetime
    target_id: str | None = None
    target_name: str | None = None


def sensitive_strings(value: Any) -> list[str]:
    """Every scalar inside a JSON value, as text: what masking must hide."""
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in sensitive_strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in sensitive_strings(item)]
    if value is None or isinstance(value, bool):
        return []
    return [str(value)]


def open_arguments(vault: Vault, task: ServerTask) -> dict[str, Any]:
    if not task.sealed_arguments:
        return {}
    value: dict[str, Any] = json.loads(
        vault.open(task.sealed_arguments, task.aad("sealed_arguments"))
    )
    return value


def last_seq(task_id: str) -> int:
    value = (
        TaskLogLine.select(peewee.fn.MAX(TaskLogLine.seq))
        .where(TaskLogLine.task == task_id)
        .scalar()
    )
    return int(value or 0)


def insert_lines(
    db: peewee.Database,
    vault: Vault,
    lines: Sequence[StoredLine],
    *,
    ignore_stored: bool = False,
) -> None:
    """Seal and insert log lines (one transaction; re-inserting a batch fails as a whole,
    unless ``ignore_stored``: then lines already stored are kept as they are, so a batch whose
    commit was lost with the connection can be written again)."""
    rows = [
        {
            "id": log_line_id(line.task_id, line.seq),
            "task": line.task_id,
            "seq": line.seq,
            "level": line.level,
            "occurred_at": line.occurred_at,
            "target_id": line.target_id,
            "target_name": line.target_name,
            "message": vault.seal(line.message, log_line_aad(line.task_id, line.seq)),
        }
        for line in lines
    ]
    with write_transaction(db):
        for start in range(0, len(rows), 500):
            insert = TaskLogLine.insert_many(rows[start : start + 500])
            if ignore_stored:
                insert = insert.on_conflict_ignore()
            insert.execute()
        notify_log(db, {line.task_id for line in lines})


def notify_log(db: peewee.Database, task_ids: Iterable[str]) -> None:
    """On PostgreSQL, tell every node these tasks' logs grew or ended (at the commit): their
    streams on other nodes follow live (docs/ha.md, "Calls across nodes")."""
    if isinstance(db, peewee.PostgresqlDatabase):
        for task_id in sorted(task_ids):
            db.execute_sql("SELECT pg_notify(%s, %s)", (LOG_CHANNEL, task_id))  # type: ignore[no-untyped-call]


def append_line_now(
    db: peewee.Database, vault: Vault, task_id: str, level: str, message: str
) -> int:
    """Append one line to the log of a task no executor is writing (queued or orphaned)."""
    with write_transaction(db):
        seq = last_seq(task_id) + 1
        insert_lines(db, vault, [StoredLine(task_id, seq, level, message, utcnow())])
    return seq


def save_target_results(
    db: peewee.Database, vault: Vault, task_id: str, results: Sequence[TargetResult]
) -> None:
    """Insert or update the row of each target, in order, in one transaction (one commit
    for a burst of results, e.g. every target's at the end of a deployment: issue 14);
    sensitive output values are sealed."""
    with write_transaction(db):
        rows = _target_rows(task_id, {result.target_id for result in results})
        for result in results:
            rows[result.target_id] = _save_target_result(
                vault, task_id, result, rows.get(result.target_id)
            )


#: target ids per ``IN (...)`` (far below every SQLite and PostgreSQL parameter limit)
_ROWS_AT_ONCE = 500


def _target_rows(task_id: str, target_ids: set[str]) -> dict[str, TaskTargetResult]:
    """The stored rows of ``target_ids``: one SELECT per burst, not one per result (at the
    end of a deployment to N targets, N reads before N writes: issue 14)."""
    ids = sorted(target_ids)
    rows: dict[str, TaskTargetResult] = {}
    for start in range(0, len(ids), _ROWS_AT_ONCE):
        chunk = ids[start : start + _ROWS_AT_ONCE]
        query = TaskTargetResult.select().where(
            (TaskTargetResult.task == task_id) & TaskTargetResult.target_id.in_(chunk)
        )
        rows.update((row.target_id, row) for row in query)
    return rows


def _save_target_result(
    vault: Vault, task_id: str, result: TargetResult, row: TaskTargetResult | None
) -> TaskTargetResult:
    plain = [
        {"name": v.name, "value": None if v.sensitive else v.value, "sensitive": v.sensitive}
        for v in result.output_variables
    ]
    secret = {v.name: v.value for v in result.output_variables if v.sensitive}
    fields = {
        "target_name": result.target_name,
        "state": result.state,
        "exit_code": result.exit_code,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "output_variables": plain,
        "message": result.message,
    }
    if row is None:
        row = TaskTargetResult(id=new_id(TaskTargetResult.id_prefix), task=task_id)
        row.target_id = result.target_id
        created = True
    else:
        created = False
    for key, value in fields.items():
        setattr(row, key, value)
    row.sealed_output_variables = (
        vault.seal(json.dumps(secret), row.aad("sealed_output_variables")) if secret else None
    )
    row.save(force_insert=created)
    return row


def open_output_variables(vault: Vault, row: TaskTargetResult) -> dict[str, str]:
    """Every output variable of a target, sensitive values opened (for later steps)."""
    values = {item["name"]: item["value"] for item in row.output_variables if not item["sensitive"]}
    if row.sealed_output_variables:
        values.update(
            json.loads(vault.open(row.sealed_output_variables, row.aad("sealed_output_variables")))
        )
    return values


def finish_task(
    db: peewee.Database, task_id: str, node: str, state: str, error: str, summary: dict[str, Any]
) -> bool:
    """Record the final state of a task this node runs; False if it was not ours any more.

    Safe to repeat: when an earlier attempt was stored although its connection was lost at
    the commit, the row already holds this end and that counts as done."""
    with write_transaction(db):
        changed = (
            ServerTask.update(state=state, error=error, summary=summary, finished_at=utcnow())
            .where(
                (ServerTask.id == task_id)
                & (ServerTask.state == EXECUTING)
                & (ServerTask.node == node)
            )
            .execute()
        )
        if changed == 1:
            notify_log(db, [task_id])
            return True
        return bool(
            ServerTask.select()
            .where(
                (ServerTask.id == task_id)
                & (ServerTask.state == state)
                & (ServerTask.node == node)
                & (ServerTask.error == error)
                & ServerTask.finished_at.is_null(False)
            )
            .exists()
        )


def executing_on(node: str) -> list[str]:
    """The ids of the tasks ``executing`` under ``node``."""
    query: Any = (
        ServerTask.select(ServerTask.id)
        .where((ServerTask.state == EXECUTING) & (ServerTask.node == node))
        .tuples()
    )
    return [task_id for (task_id,) in query]


def recover_orphans(db: peewee.Database, vault: Vault, node: str, message: str) -> list[str]:
    """Fail every task left ``executing`` by ``node`` (it died), with ``message`` in its log."""
    recovered = []
    for task_id in executing_on(node):
        with write_transaction(db):
            if fail_orphan(db, vault, task_id, node, message):
                recovered.append(task_id)
    return recovered


def fail_orphan(db: peewee.Database, vault: Vault, task_id: str, node: str, message: str) -> bool:
    """Fail one task still ``executing`` under ``node`` (whose process is gone), its unfinished
    targets and its log with ``message``; False when it was not. In the caller's transaction."""
    now = utcnow()
    changed = (
        ServerTask.update(state=FAILED, error=message, finished_at=now)
        .where(
            (ServerTask.id == task_id) & (ServerTask.state == EXECUTING) & (ServerTask.node == node)
        )
        .execute()
    )
    if changed != 1:
        return False
    TaskTargetResult.update(state=FAILED, finished_at=now, message=message).where(
        (TaskTargetResult.task == task_id)
        & TaskTargetResult.state.not_in(sorted(FINAL_TARGET_STATES))
    ).execute()
    append_line_now(db, vault, task_id, "error", message)
    return True


def cancel_task(
    db: peewee.Database, vault: Vault, task_id: str, by: str, where: Any = None
) -> str | None:
    """Cancel a queued task at once, or flag an executing one; ``where`` narrows the rows.

    Returns ``"canceled"``, ``"requested"``, or None when no queued or executing row matched.
    Writes come before any read, so on SQLite the caller's deferred transaction takes the
    write lock first (see the module doc).
    """
    condition = ServerTask.id == task_id
    if where is not None:
        condition &= where
    with db.atomic():
        changed = (
            ServerTask.update(
                state=CANCELED,
                cancel_requested=True,
                canceled_by=by,
                finished_at=utcnow(),
                error=f"canceled by {by} before it started" if by else "canceled before it started",
            )
            .where(condition & (ServerTask.state == QUEUED))
            .execute()
        )
        if changed == 1:
            note = (
                f"The task was canceled by {by} before it started."
                if by
                else ("The task was canceled before it started.")
            )
            append_line_now(db, vault, task_id, "warning", note)
            return "canceled"
        flagged = (
            ServerTask.update(cancel_requested=True, canceled_by=by)
            .where(condition & (ServerTask.state == EXECUTING))
            .execute()
        )
    return "requested" if flagged == 1 else None


def cancel_flags(task_ids: Sequence[str]) -> dict[str, str]:
    """Of these tasks, the ones flagged for cancel (by another process): id -> who."""
    if not task_ids:
        return {}
    rows: Any = (
        ServerTask.select(ServerTask.id, ServerTask.canceled_by)
        .where(ServerTask.id.in_(list(task_ids)) & (ServerTask.cancel_requested == True))  # noqa: E712
        .tuples()
    )
    return {task_id: by for task_id, by in rows}
