"""Interruption rows: a deployment asks a person and waits for the answer.

The engine writes the row (``pending``) and polls it every :data:`POLL_SECONDS` from a worker
thread; ``POST /api/v1/interruptions/{id}/submit`` records the answer (``submitted``, with
``result``, ``notes`` and ``submitted_by``). When a task ends without an answer (canceled,
aborted, the appliance restarted) its pending interruptions are closed (``closed``) so
nobody is asked about a deployment that is no longer waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from octo_appliance.db import Interruption, Team, utcnow
from octo_appliance.exceptions import DatabaseUnavailable
from octo_appliance.steps.base import InterruptionAnswer, StepFailed

POLL_SECONDS = 0.3
PENDING, SUBMITTED, CLOSED = "pending", "submitted", "closed"


@dataclass(frozen=True)
class Question:
    task_id: str
    deployment_id: str | None
    kind: str
    title: str
    instructions: str
    step_name: str
    options: tuple[str, ...]
    teams: tuple[str, ...] = ()
    target_id: str | None = None
    target_name: str = ""
    environment_id: str | None = None
    project_id: str | None = None


def team_ids(refs: Sequence[str]) -> list[str]:
    """Team ids for ids or names; a team that does not exist fails the step (nobody could
    answer for it)."""
    ids = []
    for ref in refs:
        team = Team.get_or_none((Team.id == ref) | (Team.name == ref))
        if team is None:
            raise StepFailed(
                f"responsible team '{ref}' does not exist",
                hint="fix the step's responsible_teams and create a new release",
            )
        ids.append(team.id)
    return list(dict.fromkeys(ids))


def create(question: Question) -> str:
    """Insert the pending row (blocking); returns its id."""
    row = Interruption.create_new(
        task_id=question.task_id,
        deployment=question.deployment_id,
        kind=question.kind,
        title=question.title[:300],
        instructions=question.instructions,
        step_name=question.step_name,
        target_id=question.target_id,
        target_name=question.target_name,
        responsible_teams=team_ids(question.teams),
        options=list(question.options),
        environment_id=question.environment_id,
        project_id=question.project_id,
    )
    return str(row.id)


def _answer(interruption_id: str) -> InterruptionAnswer | None:
    row = Interruption.get_or_none(Interruption.id == interruption_id)
    if row is None:
        raise StepFailed(f"interruption {interruption_id} was deleted before it was answered")
    if row.state != SUBMITTED:
        return None
    return InterruptionAnswer(row.result, row.notes or "", row.submitted_by or "")


async def wait_for_answer(interruption_id: str, poll: float = POLL_SECONDS) -> InterruptionAnswer:
    """Until the row is answered (through a database outage too); cancelling this closes the
    row."""
    try:
        while True:
            try:
                answer = await asyncio.to_thread(_answer, interruption_id)
            except DatabaseUnavailable:  # nobody can answer meanwhile: keep waiting
                answer = None
            if answer is not None:
                return answer
            await asyncio.sleep(poll)
    except asyncio.CancelledError:
        await asyncio.shield(
            asyncio.to_thread(close_one, interruption_id, "the task stopped waiting")
        )
        raise


def close_one(interruption_id: str, note: str) -> None:
    Interruption.update(state=CLOSED, notes=note, submitted_at=utcnow()).where(
        (Interruption.id == interruption_id) & (Interruption.state == PENDING)
    ).execute()


def close_pending(task_ids: Sequence[str], note: str) -> int:
    """Close every pending interruption of these tasks (blocking); returns how many."""
    if not task_ids:
        return 0
    return int(
        Interruption.update(state=CLOSED, notes=note, submitted_at=utcnow())
        .where(Interruption.task_id.in_(list(task_ids)) & (Interruption.state == PENDING))
        .execute()
    )
