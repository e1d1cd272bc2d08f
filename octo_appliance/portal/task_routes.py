"""The routes of the task pages, the live dashboard, the script console and the packages page
(one table, spliced into :meth:`octo_appliance.portal.routes.Portal.routes`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from octo_appliance.portal import live, packages, scripts, task_actions, task_log, tasks

if TYPE_CHECKING:
    from octo_appliance.portal.routes import View

TASK_PAGES: list[tuple[str, View, list[str]]] = [
    ("/dashboard/events", live.events, ["GET"]),
    ("/tasks", tasks.index, ["GET"]),
    ("/tasks/{task_id}", tasks.show, ["GET"]),
    ("/tasks/{task_id}/progress", tasks.progress_part, ["GET"]),
    ("/tasks/{task_id}/lines", task_log.lines, ["GET"]),
    ("/tasks/{task_id}/log.txt", task_log.download, ["GET"]),
    ("/tasks/{task_id}/cancel", task_actions.cancel, ["POST"]),
    ("/tasks/{task_id}/interruptions/{interruption_id}", task_actions.answer, ["POST"]),
    ("/scripts", scripts.show, ["GET"]),
    ("/scripts", scripts.submit, ["POST"]),
    ("/packages", packages.show, ["GET"]),
    ("/packages", packages.upload, ["POST"]),
    ("/packages/{package_id}/{version}/delete", packages.delete, ["POST"]),
]
