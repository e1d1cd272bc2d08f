"""The deployment row mirrors its task: state and end time (blocking helpers).

The handler writes ``executing`` when it starts and the final state when it ends. What the
handler cannot see (a task canceled while still queued, a task failed at start because the
appliance died under it) is caught by :func:`reconcile`, run when the appliance starts and
after every deployment task: a deployment whose task is final takes the task's state, and the
pending interruptions of final tasks are closed.
"""

from __future__ import annotations

from typing import Any

from octo_appliance.db import Deployment, Interruption, ServerTask, utcnow
from octo_appliance.db.tasks import EXECUTING, FINAL_STATES
from octo_appliance.engine.deployments.interruptions import CLOSED, PENDING

OPEN_STATES = ("queued", EXECUTING)


def mark_executing(deployment_id: str) -> None:
    Deployment.update(state=EXECUTING).where(
        (Deployment.id == deployment_id) & Deployment.state.in_(OPEN_STATES)
    ).execute()


def mark_finished(deployment_id: str, state: str) -> None:
    Deployment.update(state=state, finished_at=utcnow()).where(
        Deployment.id == deployment_id
    ).execute()


def reconcile() -> list[str]:
    """Mirror final tasks onto open deployments; close their pending interruptions.
    Returns the ids of the deployments changed."""
    rows: Any = (
        Deployment.select(Deployment.id, ServerTask.state, ServerTask.finished_at)
        .join(ServerTask, on=(Deployment.task_id == ServerTask.id))
        .where(Deployment.state.in_(OPEN_STATES) & ServerTask.state.in_(sorted(FINAL_STATES)))
        .tuples()
    )
    changed = []
    for deployment_id, state, finished_at in list(rows):
        Deployment.update(state=state, finished_at=finished_at or utcnow()).where(
            (Deployment.id == deployment_id) & Deployment.state.in_(OPEN_STATES)
        ).execute()
        changed.append(deployment_id)
    finished_tasks = ServerTask.select(ServerTask.id).where(
        ServerTask.state.in_(sorted(FINAL_STATES))
    )
    Interruption.update(
        state=CLOSED, notes="the task ended before anyone answered", submitted_at=utcnow()
    ).where((Interruption.state == PENDING) & Interruption.task_id.in_(finished_tasks)).execute()
    return changed
