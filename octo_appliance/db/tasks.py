"""Server tasks: the persistent queue, per-target results and the sealed task log.

A task row is the unit a node claims (``queued`` -> ``executing``) and finishes; its log lines
and target results hang off it. Sensitive parts live only in sealed columns:
``ServerTask.sealed_arguments``, ``TaskTargetResult.sealed_output_variables`` and every
``TaskLogLine.message`` (log lines are sealed even though they are masked, because a log
holds what a deployment printed: hostnames, paths, data an operator may not want on a backup).

A log line's id is ``log_<task id>_<seq>``, so the associated data of its sealed message
(``row.aad("message")``) binds the task and the sequence number: a line copied to another task
or position does not open (:func:`check_line_id`), and key rotation re-seals it like any row.
"""

from __future__ import annotations

import peewee

from octo_appliance.db.base import BaseModel, JSONField, utcnow

QUEUED = "queued"
EXECUTING = "executing"
SUCCESS = "success"
FAILED = "failed"
CANCELED = "canceled"
TIMED_OUT = "timed_out"

TASK_STATES: tuple[str, ...] = (QUEUED, EXECUTING, SUCCESS, FAILED, CANCELED, TIMED_OUT)
FINAL_STATES: frozenset[str] = frozenset({SUCCESS, FAILED, CANCELED, TIMED_OUT})

#: States of one target within a task (``pending``: not started yet; ``skipped``: not run).
TARGET_STATES: tuple[str, ...] = (
    "pending",
    EXECUTING,
    SUCCESS,
    FAILED,
    CANCELED,
    TIMED_OUT,
    "skipped",
)
FINAL_TARGET_STATES: frozenset[str] = frozenset(TARGET_STATES) - {"pending", EXECUTING}

LOG_LEVELS: tuple[str, ...] = ("verbose", "info", "highlight", "warning", "error")


class ServerTask(BaseModel):
    """One unit of background work: a script run, a health check, a deployment."""

    id_prefix = "task"

    kind = peewee.CharField(max_length=60, index=True)
    description = peewee.TextField(default="")
    state = peewee.CharField(max_length=20, default=QUEUED)
    #: non-sensitive arguments only; sensitive ones are sealed in ``sealed_arguments``
    arguments = JSONField(default=dict)
    sealed_arguments = peewee.TextField(null=True)
    #: not a foreign key: the history outlives a deleted user
    created_by_id = peewee.CharField(max_length=40, null=True)
    created_by_name = peewee.CharField(max_length=100, default="")
    created_at = peewee.DateTimeField(default=utcnow)
    started_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)
    #: the appliance node that claimed it
    node = peewee.CharField(max_length=200, default="")
    cancel_requested = peewee.BooleanField(default=False)
    canceled_by = peewee.CharField(max_length=100, default="")
    #: why it failed (masked), empty otherwise
    error = peewee.TextField(default="")
    timeout_seconds = peewee.IntegerField(null=True)
    #: not claimed before this time (UTC): a deployment scheduled ahead waits ``queued``,
    #: holding no slot of the task cap
    not_before = peewee.DateTimeField(null=True)
    #: permission scope (not foreign keys: tasks stay when an environment or project goes)
    environment_id = peewee.CharField(max_length=40, null=True, index=True)
    project_id = peewee.CharField(max_length=40, null=True, index=True)
    #: per-target results in brief: ``{"targets": N, "states": {"success": N, ...}}``
    summary = JSONField(default=dict)

    class Meta:
        indexes = ((("state", "created_at"), False),)


class TaskTargetResult(BaseModel):
    """The outcome of a task on one target."""

    id_prefix = "ttr"

    task = peewee.ForeignKeyField(
        ServerTask, backref="target_results", on_delete="CASCADE", index=False
    )
    target_id = peewee.CharField(max_length=40)
    target_name = peewee.CharField(max_length=200, default="")
    state = peewee.CharField(max_length=20, default="pending")
    exit_code = peewee.IntegerField(null=True)
    started_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)
    #: ``[{"name", "value", "sensitive"}]``; sensitive values are ``None`` here
    output_variables = JSONField(default=list)
    #: sealed JSON ``{name: value}`` of the sensitive output variables
    sealed_output_variables = peewee.TextField(null=True)
    message = peewee.TextField(default="")

    class Meta:
        indexes = ((("task", "target_id"), True),)


class TaskLogLine(BaseModel):
    """One line of a task's log; ``message`` is sealed (and was masked before sealing)."""

    id_prefix = "log"

    task = peewee.ForeignKeyField(ServerTask, backref="log_lines", on_delete="CASCADE", index=False)
    seq = peewee.IntegerField()
    level = peewee.CharField(max_length=20, default="info")
    occurred_at = peewee.DateTimeField(default=utcnow)
    target_id = peewee.CharField(max_length=40, null=True)
    target_name = peewee.CharField(max_length=200, null=True)
    message = peewee.TextField()

    class Meta:
        indexes = ((("task", "seq"), True),)


def log_line_id(task_id: str, seq: int) -> str:
    """The id of a task's ``seq``-th log line; it is bound into the sealed message."""
    return f"log_{task_id}_{seq}"


def log_line_aad(task_id: str, seq: int) -> bytes:
    """Associated data of a log line's message (what ``row.aad("message")`` gives)."""
    return TaskLogLine(id=log_line_id(task_id, seq)).aad("message")


def check_line_id(row_id: str, task_id: str, seq: int) -> bool:
    """True when a row's id matches its task and position (it was not moved)."""
    return row_id == log_line_id(task_id, seq)
