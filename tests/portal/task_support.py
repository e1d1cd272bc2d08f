"""What the task-page tests share: a task with a log of any length, written as the engine
writes it (numbered, sealed lines), and reading a form's CSRF token from a page."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from octo_appliance.db.base import utcnow
from octo_appliance.db.tasks import ServerTask
from octo_appliance.engine.tasks.store import StoredLine, insert_lines
from octo_appliance.testing import OctoTestAppliance

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "the page has no form with the CSRF field"
    return found.group(1)


def task_with_log(
    octo: OctoTestAppliance, lines: int, state: str = "success", **fields: Any
) -> str:
    """A task whose log has ``lines`` lines: a step header, then lines of two targets."""
    now = utcnow()
    task = ServerTask.create_new(
        kind=fields.pop("kind", "script"),
        description=fields.pop("description", "Script on 2 target(s)"),
        state=state,
        started_at=now - timedelta(seconds=30),
        finished_at=now if state in ("success", "failed", "canceled") else None,
        **fields,
    )
    stored = []
    for seq in range(1, lines + 1):
        target = ("tgt_web", "web-01") if seq % 2 else ("tgt_db", "db-01")
        level, message = "info", f"line {seq} of the script"
        if seq == 1:
            level, message, target = (
                "highlight",
                "Step 'Migrate' (run-script) started.",
                (None, None),
            )
        elif seq % 97 == 0:
            level = "warning"
        elif seq % 5 == 0:
            level = "verbose"
        stored.append(StoredLine(task.id, seq, level, message, now, target[0], target[1]))
    if stored:
        insert_lines(octo.appliance.db, octo.appliance.vault, stored)
    return str(task.id)


def dev_with_a_local_target(octo: OctoTestAppliance) -> None:
    """The environment Dev with one target on the built-in worker (``here``, role ``web``)."""
    api = octo.api
    assert api.post("/environments", json={"name": "Dev"}).status_code == 201
    target = {"name": "here", "environments": ["Dev"], "roles": ["web"]}
    assert api.post("/targets", json={**target, "communication_style": "local"}).status_code == 201
