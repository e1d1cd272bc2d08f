"""A task's log as the task page shows it: a window of lines, never the whole log at once.

A log may hold 100,000 lines; a page renders only the last :data:`WINDOW` of them (or the
:data:`WINDOW` before ``before``: the "earlier lines" link), read through the API's own
``get_task_log``. Sequence numbers of a task's lines are consecutive, so the window before a
line is one ``since``/``take`` read. The browser follows the rest through the API's SSE stream
(``static/task-log.js``), appending in batches and keeping a bounded number of rows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import peewee
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from octo_appliance.api.tasks import LogQuery, get_task, get_task_log
from octo_appliance.db.tasks import FINAL_STATES, TaskLogLine
from octo_appliance.engine.tasks.log import line_json, read_lines
from octo_appliance.portal.session import signed_in

if TYPE_CHECKING:
    from octo_appliance.api.context import RequestContext
    from octo_appliance.portal.routes import Portal

#: lines one page (or one "earlier lines" fragment) renders
WINDOW = 200
#: lines per read of the raw-log download (the API's largest page)
DOWNLOAD_PAGE = 5000
#: the engine's line that opens a step (``engine/deployments/kind.py``): a header in the log
STEP_START = re.compile(r"^Step '(?P<name>.+)' \((?P<type>[^)]*)\) started\.$")
LEVELS = ("verbose", "info", "highlight", "warning", "error")


def step_name(line: dict[str, Any]) -> str | None:
    """The step a line opens (None: an ordinary line)."""
    if line["level"] != "highlight":
        return None
    found = STEP_START.match(line["message"])
    return found.group("name") if found else None


def parse_before(value: str | None) -> int | None:
    """``?before=`` as a sequence number (None: the newest lines)."""
    if value and value.isascii() and value.isdigit() and 0 < int(value) < 2**31:
        return int(value)
    return None


def highest_seq(task_id: str) -> int:
    """The task's last stored line number: one step down the ``(task, seq)`` index (a
    ``COUNT`` would read every line of a 100,000-line log)."""
    query = TaskLogLine.select(peewee.fn.MAX(TaskLogLine.seq)).where(TaskLogLine.task == task_id)
    return int(query.scalar() or 0)


def window(
    ctx: RequestContext, task_id: str, before: int | None, task: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The lines to render: the last :data:`WINDOW` (or those before ``before``), marked.

    The task is read through the API first (``get_task``: its ``task.view`` scope; ``task``
    when the caller has just read it); the
    lines through the engine's ``read_lines``, as the API's log endpoint reads them, without
    that endpoint's count of every line."""
    task = task or get_task(ctx, task_id)
    highest = highest_seq(task_id)
    if before is None:
        since, take = max(0, highest - WINDOW), WINDOW
    else:
        since = max(0, min(before, highest + 1) - 1 - WINDOW)
        take = max(0, min(before, highest + 1) - 1 - since)
    lines = [line_json(line) for line in read_lines(ctx.appliance.vault, task_id, since, take)]
    for line in lines:
        line["step"] = step_name(line)
    first = lines[0]["seq"] if lines else since + 1
    return {
        "lines": lines,
        "total": highest,
        "first": first,
        "last": lines[-1]["seq"] if lines else since,
        "earlier": first > 1 and highest > 0,
        "finished": task["state"] in FINAL_STATES,
        "state": task["state"],
        "task": task,
    }


@signed_in
async def lines(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /tasks/{id}/lines?before=SEQ``: the rows before ``SEQ`` (the "earlier" link)."""
    task_id = request.path_params["task_id"]
    before = parse_before(request.query_params.get("before")) or 1
    data = await portal.run(lambda: window(ctx, task_id, before))
    return portal.render(request, ctx, "task_lines.html", {"task_id": task_id, "log": data})


@signed_in
async def download(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /tasks/{id}/log.txt``: the whole log as text, read a page at a time."""
    task_id = request.path_params["task_id"]
    await portal.run(lambda: get_task(ctx, task_id))  # refused (403/404) before streaming

    async def text() -> AsyncIterator[bytes]:
        since = 0
        while True:
            read = functools.partial(
                get_task_log, ctx, task_id, LogQuery(since=since, take=DOWNLOAD_PAGE)
            )
            page = await portal.run(read)
            if not page["items"]:
                return
            yield "".join(_text_line(line) for line in page["items"]).encode("utf-8")
            since = page["next_since"]

    headers = {
        "content-disposition": f'attachment; filename="{task_id}.log"',
        "cache-control": "no-store",
    }
    return StreamingResponse(text(), media_type="text/plain; charset=utf-8", headers=headers)


def _text_line(line: dict[str, Any]) -> str:
    target = f" [{line['target']['name']}]" if line["target"] else ""
    return f"{line['time']} {line['level'].upper():<9}{target} {line['message']}\n"
