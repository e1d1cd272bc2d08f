"""``/api/v1/tasks``: server tasks, their per-target results, their log and its live stream.

Visibility follows the task's scope: a task that names an environment and/or a project is seen
by users whose ``task.view`` grant covers them; a grant limited to some environments (or
projects) does not cover a task that names none, because such a task may touch any of them.
Cancelling needs ``task.cancel`` with the same scope rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Unpack

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import paginate
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Line, ListQuery, Out, Page
from octo_appliance.api.task_stream import log_events, resume_point
from octo_appliance.db.base import iso, utcnow
from octo_appliance.db.tasks import FINAL_STATES, TASK_STATES, ServerTask, TaskTargetResult
from octo_appliance.engine.tasks import store
from octo_appliance.engine.tasks.creation import TaskOptions
from octo_appliance.engine.tasks.log import count_lines, line_json, read_lines
from octo_appliance.exceptions import ApiError, Conflict, Forbidden, NotFound
from octo_appliance.security.permissions import Permission, Principal, grant_condition

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance
    from octo_appliance.engine.tasks import TaskEngine

router = Router("tasks")

TaskState = Literal["queued", "executing", "success", "failed", "canceled", "timed_out"]
assert set(TaskState.__args__) == set(TASK_STATES)  # type: ignore[attr-defined]


class EngineUnavailable(ApiError):
    status_code = 503
    code = "unavailable"


# ---------------------------------------------------------------- the engine


def find_engine(appliance: Appliance) -> TaskEngine | None:
    """The task engine the server attached as ``appliance.task_engine``, if any."""
    return appliance.task_engine


def get_engine(appliance: Appliance) -> TaskEngine:
    engine = find_engine(appliance)
    if engine is None or not engine.started:
        raise EngineUnavailable(
            "the task engine is not running on this appliance node",
            hint="wait until the appliance has finished starting, then try again",
        )
    return engine


def enqueue_for_request(
    ctx: RequestContext,
    kind: str,
    description: str,
    arguments: Mapping[str, Any] | None = None,
    sensitive_arguments: Mapping[str, Any] | None = None,
    **options: Unpack[TaskOptions],
) -> str:
    """Queue a task on behalf of the caller (its ``created_by_*`` are the caller's); the
    engine is woken when the request commits."""
    options["created_by_id"] = ctx.user.user_id
    options["created_by_name"] = ctx.user.username
    return get_engine(ctx.appliance).enqueue(
        kind, description, arguments, sensitive_arguments, **options
    )


# ---------------------------------------------------------------- scope


def _covers(grant: Any, task: ServerTask) -> bool:
    if grant.projects and task.project_id not in grant.projects:
        return False
    return not (grant.environments and task.environment_id not in grant.environments)


def task_allowed(principal: Principal, permission: Permission, task: ServerTask) -> bool:
    return any(
        permission in grant.permissions and _covers(grant, task) for grant in principal.grants
    )


def scope_condition(principal: Principal, permission: Permission) -> Any:
    """The tasks ``permission`` covers, as a peewee condition (None: all of them)."""
    return grant_condition(principal, permission, ServerTask.project_id, ServerTask.environment_id)


def _task_for(ctx: RequestContext, task_id: str, permission: Permission) -> ServerTask:
    ctx.require(permission)
    task = ServerTask.get_or_none(ServerTask.id == task_id)
    if task is None:
        raise NotFound(f"no task with id '{task_id}'")
    if not task_allowed(ctx.user, permission, task):
        raise Forbidden(
            f"you lack the permission '{permission}' for the environment or project of this task",
            hint="ask an administrator to widen your team's grant",
        )
    return task


# ---------------------------------------------------------------- shapes


class TaskListQuery(ListQuery):
    state: TaskState | None = Field(None, description="Only tasks in this state.")
    kind: Line | None = Field(None, max_length=60, description="Only tasks of this kind.")


class LogQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    since: int = Field(0, ge=0, le=2**31 - 1, description="Lines after this sequence number.")
    take: int = Field(500, ge=1, le=5000, description="Lines to return (at most 5000).")


class DetailQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    targets: bool = Field(
        True,
        description="false: leave the per-target results out (`targets` is empty). What a "
        "client polls while it waits for a task on thousands of targets to end: every read "
        "of them costs the appliance one row per target.",
    )


class StreamQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    since: int | None = Field(
        None, ge=0, le=2**31 - 1, description="Start after this line (Last-Event-ID wins)."
    )


class CreatedByOut(Out):
    id: str | None
    username: str


class TaskOut(Out):
    id: str
    kind: str
    description: str
    state: TaskState
    created_by: CreatedByOut
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_ms: int | None
    error: str | None
    node: str | None
    cancel_requested: bool
    canceled_by: str | None
    timeout_seconds: int | None
    queue_time: str | None
    environment_id: str | None
    project_id: str | None
    summary: dict[str, Any]


class OutputVariableOut(Out):
    name: str
    value: str | None
    sensitive: bool


class TargetResultOut(Out):
    target_id: str
    target_name: str
    state: str
    exit_code: int | None
    started_at: str | None
    finished_at: str | None
    duration_ms: int | None
    message: str
    output_variables: list[OutputVariableOut]


class TaskDetailOut(TaskOut):
    arguments: dict[str, Any]
    targets: list[TargetResultOut]


class LogTargetOut(Out):
    id: str
    name: str


class LogLineOut(Out):
    seq: int
    time: str
    level: str
    target: LogTargetOut | None
    message: str


class LogPageOut(Out):
    items: list[LogLineOut]
    total: int
    next_since: int
    finished: bool
    state: TaskState


def _duration_ms(started: Any, finished: Any) -> int | None:
    if started is None:
        return None
    return int(((finished or utcnow()) - started).total_seconds() * 1000)


def task_json(task: ServerTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "kind": task.kind,
        "description": task.description,
        "state": task.state,
        "created_by": {"id": task.created_by_id, "username": task.created_by_name},
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "duration_ms": _duration_ms(task.started_at, task.finished_at),
        "error": task.error or None,
        "node": task.node or None,
        "cancel_requested": task.cancel_requested,
        "canceled_by": task.canceled_by or None,
        "timeout_seconds": task.timeout_seconds,
        "queue_time": iso(task.not_before),
        "environment_id": task.environment_id,
        "project_id": task.project_id,
        "summary": task.summary or {},
    }


def _target_json(row: TaskTargetResult) -> dict[str, Any]:
    return {
        "target_id": row.target_id,
        "target_name": row.target_name,
        "state": row.state,
        "exit_code": row.exit_code,
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "duration_ms": _duration_ms(row.started_at, row.finished_at) if row.started_at else None,
        "message": row.message,
        "output_variables": [
            {
                "name": item["name"],
                "value": None if item["sensitive"] else item["value"],
                "sensitive": bool(item["sensitive"]),
            }
            for item in row.output_variables or []
        ],
    }


def task_detail_json(task: ServerTask, *, targets: bool = True) -> dict[str, Any]:
    """The task with each target's result; ``targets=False``: without them, no row read (a
    poll that costs the same for 5 targets as for 5,000: issue 14)."""
    if not targets:
        return {**task_json(task), "arguments": task.arguments or {}, "targets": []}
    results = (
        TaskTargetResult.select()
        .where(TaskTargetResult.task == task.id)
        .order_by(TaskTargetResult.target_name, TaskTargetResult.target_id)
    )
    return {
        **task_json(task),
        "arguments": task.arguments or {},
        "targets": [_target_json(row) for row in results],
    }


# ---------------------------------------------------------------- endpoints


@router.get("/tasks", summary="List server tasks", query=TaskListQuery, response=Page[TaskOut])
def list_tasks(ctx: RequestContext, query: TaskListQuery) -> dict[str, Any]:
    """Newest first. ``name`` matches the description."""
    ctx.require(Permission.TASK_VIEW)
    rows = ServerTask.select()
    if query.name:
        rows = rows.where(ServerTask.description.contains(query.name))
    if query.state:
        rows = rows.where(ServerTask.state == query.state)
    if query.kind:
        rows = rows.where(ServerTask.kind == query.kind)
    condition = scope_condition(ctx.user, Permission.TASK_VIEW)
    if condition is not None:
        rows = rows.where(condition)
    return paginate(rows, query, task_json, ServerTask.created_at.desc(), ServerTask.id.desc())


@router.get(
    "/tasks/{task_id}", summary="Get a server task", query=DetailQuery, response=TaskDetailOut
)
def get_task(ctx: RequestContext, task_id: str, query: DetailQuery | None = None) -> dict[str, Any]:
    """State, times, error and each target's result (sensitive output values withheld);
    ``?targets=false`` leaves the results out, for polling until the task ends. The portal
    calls it without a query (every target's result)."""
    task = _task_for(ctx, task_id, Permission.TASK_VIEW)
    return task_detail_json(task, targets=query is None or query.targets)


@router.post(
    "/tasks/{task_id}/cancel",
    summary="Cancel a server task",
    response=TaskDetailOut,
    errors=(409,),
)
def cancel_task(ctx: RequestContext, task_id: str) -> dict[str, Any]:
    """A queued task is canceled at once; an executing one is asked to stop (its state turns
    ``canceled`` once its work has stopped). A finished task is a 409."""
    ctx.require(Permission.TASK_CANCEL)
    appliance = ctx.appliance
    by = ctx.user.username
    # The write comes first: on SQLite it takes the lock before this transaction reads.
    outcome = store.cancel_task(
        appliance.db,
        appliance.vault,
        task_id,
        by,
        where=scope_condition(ctx.user, Permission.TASK_CANCEL),
    )
    task = ServerTask.get_or_none(ServerTask.id == task_id)
    if task is None:
        raise NotFound(f"no task with id '{task_id}'")
    if outcome is None:
        if not task_allowed(ctx.user, Permission.TASK_CANCEL, task):
            raise Forbidden(
                "you lack the permission 'task.cancel' for the environment or project of this task",
                hint="ask an administrator to widen your team's grant",
            )
        raise Conflict(
            f"task {task.id} has already finished ({task.state})",
            hint="a finished task cannot be canceled; start a new one to run it again",
        )
    ctx.audit("cancel", "task", task.id, task.description[:300], {"outcome": outcome})
    engine = find_engine(appliance)
    if outcome == "requested" and engine is not None:
        ctx.after_commit(functools.partial(engine.request_cancel, task.id, by))
    return task_detail_json(task)


@router.get(
    "/tasks/{task_id}/log",
    summary="Read a server task's log",
    query=LogQuery,
    response=LogPageOut,
)
def get_task_log(ctx: RequestContext, task_id: str, query: LogQuery) -> dict[str, Any]:
    """Lines after ``since`` in order; poll with ``since=next_since`` until ``finished``."""
    task = _task_for(ctx, task_id, Permission.TASK_VIEW)
    state = task.state  # read before the lines: a finished task's lines are all stored
    lines = read_lines(ctx.appliance.vault, task.id, query.since, query.take)
    total, highest = count_lines(task.id)
    next_since = lines[-1].seq if lines else query.since
    return {
        "items": [line_json(line) for line in lines],
        "total": total,
        "next_since": next_since,
        "finished": state in FINAL_STATES and next_since >= highest,
        "state": state,
    }


@router.get(
    "/tasks/{task_id}/log/stream",
    summary="Follow a server task's log (server-sent events)",
    query=StreamQuery,
    raw_response=True,
)
def stream_task_log(
    ctx: RequestContext, task_id: str, query: StreamQuery, request: Request
) -> Response:
    """``text/event-stream``: one ``log`` event per line (``id`` = its sequence number), a
    comment every 15 s, and an ``end`` event with the final state, after which the stream
    closes. Resume with the ``Last-Event-ID`` header (or ``?since=``)."""
    task = _task_for(ctx, task_id, Permission.TASK_VIEW)
    since = resume_point(request.headers.get("last-event-id"), query.since)
    appliance = ctx.appliance
    engine = find_engine(appliance)

    async def in_worker(call: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(call, limiter=appliance.worker_limiter())

    writer = engine.log if engine else None
    events = log_events(appliance.vault, task.id, since, writer, in_worker, appliance.call_relay)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
