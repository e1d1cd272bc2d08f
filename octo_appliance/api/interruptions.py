"""``/api/v1/interruptions``: deployments waiting for a person, and their answers.

Manual intervention and guided failure share one mechanism: the executor writes an
``Interruption`` row listing the answers it accepts (``options``) and waits; a person submits
one here; the executor sees the row change and carries on. Answers: ``approve``/``reject``
(manual intervention), ``retry``/``skip``/``exclude-target``/``abort`` (guided failure).
States: ``pending``, ``submitted`` (answered) and ``closed`` (the task ended without an answer).

Who may answer: when the interruption names ``responsible_teams``, only members of those teams;
otherwise anyone with ``deployment.create`` on its project in its environment. Reading needs
``project.view`` covering the project and environment (or membership of a responsible team).
An answer is recorded once (a second one is a 409), audited, and written to the task's log.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import Field

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import paginate
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Body, Line, ListQuery, Out, Text
from octo_appliance.api.tasks import find_engine
from octo_appliance.db import Interruption, Team, TeamMember
from octo_appliance.db.base import fk_id, iso, tuples, utcnow
from octo_appliance.exceptions import Conflict, Forbidden, NotFound, ValidationFailed
from octo_appliance.security.permissions import Permission, grant_condition

router = Router("interruptions")

PENDING = "pending"
SUBMITTED = "submitted"
Result = Literal["approve", "reject", "retry", "skip", "exclude-target", "abort"]


class InterruptionQuery(ListQuery):
    pending: bool | None = Field(
        None, description="true: waiting only; false: answered or closed only."
    )
    task: Line | None = Field(None, max_length=40, description="Only this task's.")
    deployment: Line | None = Field(None, max_length=40, description="Only this deployment's.")


class SubmitIn(Body):
    result: Result
    notes: Text = Field("", max_length=10_000)


class InterruptionOut(Out):
    id: str
    task_id: str
    deployment_id: str | None
    kind: str
    title: str
    instructions: str
    step_name: str
    target_id: str | None
    target_name: str
    responsible_teams: list[str]
    options: list[str]
    environment_id: str | None
    project_id: str | None
    state: str
    result: str | None
    notes: str
    submitted_by: str
    created_at: str
    submitted_at: str | None
    can_submit: bool = Field(description="Whether the caller may answer it now.")


class _Caller:
    """What decides, for one request, which interruptions the caller sees and may answer."""

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        query = TeamMember.select(TeamMember.team).where(TeamMember.user == ctx.user.user_id)
        self.teams = {team_id for (team_id,) in tuples(query)}

    def responsible(self, row: Any) -> bool:
        return bool(set(row.responsible_teams or []) & self.teams)

    def may_view(self, row: Any) -> bool:
        return self.responsible(row) or self.ctx.user.can(
            Permission.PROJECT_VIEW, project=row.project_id, environment=row.environment_id
        )

    def may_answer(self, row: Any) -> bool:
        if row.responsible_teams:
            return self.responsible(row)
        return self.ctx.user.can(
            Permission.DEPLOYMENT_CREATE, project=row.project_id, environment=row.environment_id
        )

    def to_json(self, row: Any) -> dict[str, Any]:
        return {
            "id": row.id,
            "task_id": row.task_id,
            "deployment_id": row.deployment,
            "kind": row.kind,
            "title": row.title,
            "instructions": row.instructions,
            "step_name": row.step_name,
            "target_id": row.target_id,
            "target_name": row.target_name,
            "responsible_teams": list(row.responsible_teams or []),
            "options": list(row.options or []),
            "environment_id": row.environment_id,
            "project_id": row.project_id,
            "state": row.state,
            "result": row.result or None,
            "notes": row.notes,
            "submitted_by": row.submitted_by,
            "created_at": iso(row.created_at),
            "submitted_at": iso(row.submitted_at),
            "can_submit": row.state == PENDING and self.may_answer(row),
        }


def _plain(row: Interruption) -> Any:
    """A model row read like the plain rows of the list (``deployment`` as the id)."""
    return SimpleNamespace(**row.__data__)


def _visible(caller: _Caller, interruption_id: str) -> Interruption:
    row = Interruption.get_or_none(Interruption.id == interruption_id)
    if row is None:
        raise NotFound(f"no interruption with id '{interruption_id}'")
    if not caller.may_view(row):
        raise Forbidden(
            "you lack the permission 'project.view' for the project or environment of this "
            "interruption",
            hint="ask an administrator to widen your team's grant",
        )
    return row


@router.listing(
    "/interruptions",
    "List interruptions (deployments waiting for a person), newest first",
    InterruptionOut,
    query=InterruptionQuery,
)
def list_interruptions(ctx: RequestContext, query: InterruptionQuery) -> dict[str, Any]:
    """``pending=true`` for those still waiting; ``task`` and ``deployment`` narrow by id.
    Shows those in the caller's project/environment scope and those their teams must answer."""
    ctx.require(Permission.PROJECT_VIEW)
    caller = _Caller(ctx)
    rows = Interruption.select()
    if query.pending is not None:
        state = Interruption.state
        rows = rows.where(state == PENDING if query.pending else state != PENDING)
    if query.task:
        rows = rows.where(Interruption.task_id == query.task)
    if query.deployment:
        rows = rows.where(Interruption.deployment == query.deployment)
    if query.name:
        rows = rows.where(Interruption.title.contains(query.name))
    condition = grant_condition(
        ctx.user, Permission.PROJECT_VIEW, Interruption.project_id, Interruption.environment_id
    )
    if condition is not None:
        for team in sorted(caller.teams):
            condition = condition | Interruption.responsible_teams.contains(f'"{team}"')
        rows = rows.where(condition)
    return paginate(
        rows,
        query,
        caller.to_json,
        Interruption.created_at.desc(),
        Interruption.id.desc(),
        plain_rows=True,
    )


@router.get(
    "/interruptions/{interruption_id}", summary="Get an interruption", response=InterruptionOut
)
def get_interruption(ctx: RequestContext, interruption_id: str) -> dict[str, Any]:
    caller = _Caller(ctx)
    return caller.to_json(_plain(_visible(caller, interruption_id)))


@router.post(
    "/interruptions/{interruption_id}/submit",
    summary="Answer an interruption",
    body=SubmitIn,
    response=InterruptionOut,
    errors=(409,),
)
def submit_interruption(
    ctx: RequestContext, interruption_id: str, body: SubmitIn
) -> dict[str, Any]:
    """``result`` must be one of the interruption's ``options`` (422 otherwise); an answered
    interruption is a 409. With ``responsible_teams``, only their members may answer;
    otherwise ``deployment.create`` on the project in the environment is needed."""
    caller = _Caller(ctx)
    row = _visible(caller, interruption_id)
    if not caller.may_answer(row):
        if row.responsible_teams:
            teams = Team.select(Team.name).where(Team.id.in_(list(row.responsible_teams)))
            names = [name for (name,) in tuples(teams.order_by(Team.name))]
            raise Forbidden(
                f"only members of {', '.join(names) or 'its responsible teams'} may answer "
                "this interruption",
                hint="ask a member of one of those teams",
            )
        ctx.require(
            Permission.DEPLOYMENT_CREATE, project=row.project_id, environment=row.environment_id
        )
    if row.state == SUBMITTED:
        raise Conflict(
            f"the interruption was already answered ({row.result} by {row.submitted_by})",
            hint="a deployment takes one answer per interruption",
        )
    if row.state != PENDING:
        raise Conflict(
            f"the deployment no longer waits for this answer ({row.state}: {row.notes})",
            hint="its task has ended; start a new deployment if needed",
        )
    if body.result not in (row.options or []):
        raise ValidationFailed(
            f"'{body.result}' is not an answer this interruption takes",
            details=[{"field": "result", "message": f"one of: {', '.join(row.options or [])}"}],
        )
    now = utcnow()
    changed = (
        Interruption.update(
            state=SUBMITTED,
            result=body.result,
            notes=body.notes,
            submitted_by=ctx.user.username,
            submitted_at=now,
        )
        .where(Interruption.id == row.id, Interruption.state == PENDING)
        .execute()
    )
    if changed == 0:
        raise Conflict(
            "the interruption was answered a moment ago", hint="reload it to see the answer"
        )
    ctx.audit(
        "submit",
        "interruption",
        row.id,
        row.title[:200],
        {
            "result": body.result,
            "notes": body.notes,
            "kind": row.kind,
            "task_id": row.task_id,
            "deployment_id": fk_id(row, "deployment"),
        },
    )
    message = f"{row.title}: {body.result} by {ctx.user.username}"
    if body.notes:
        message += f" ({body.notes})"
    ctx.after_commit(lambda: _log_answer(ctx, row.task_id, message))
    return caller.to_json(_plain(Interruption.get_by_id(row.id)))


def _log_answer(ctx: RequestContext, task_id: str, message: str) -> None:
    """Write the answer to the task log when the task runs on this node (the executor, which
    sees the answer in the database, may log it on another node)."""
    engine = find_engine(ctx.appliance)
    if engine is not None and engine.log.is_open(task_id):
        with contextlib.suppress(KeyError):  # finished between the check and the append
            engine.log.append(task_id, "info", message)
