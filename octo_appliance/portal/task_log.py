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

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from octo_appliance.api.tasks import LogQuery, get_task, get_task_log
from octo_appliance.engine.tasks.log import count_lines

if TYPE_CHECKING:
    from octo_appliance.api.context import RequestContext
    from octo_appliance.portal.routes import Portal

#: lines one page (or one "earlier lines" fragment) renders
WINDOW = 500
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


def window(ctx: RequestContext, task_id: str, before: int | None) -> dict[str, Any]:
    """The lines to render: the last :data:`WINDOW` (or those before ``before``), marked.

    The caller has read the task through the API (its permission checked)."""
    if before is None:
        _total, highest = count_lines(task_id)
        since, take = max(0, highest - WINDOW), WINDOW
    else:
        since = max(0, before - 1 - WINDOW)
        take = max(1, before - 1 - since)
    page = get_task_log(ctx, task_id, LogQuery(since=since, take=take))
    lines = page["items"] if before is None or before > 1 else []
    for line in lines:
        line["step"] = step_name(line)
    first = lines[0]["seq"] if lines else since + 1
    return {
        "lines": lines,
        "total": page["total"],
        "first": first,
        "last": lines[-1]["seq"] if lines else since,
        "earlier": first > 1 and page["total"] > 0,
        "finished": page["finished"],
        "state": page["state"],
    }


async def lines(portal: Portal, request: Request) -> Response:
    """``GET /tasks/{id}/lines?before=SEQ``: the rows before ``SEQ`` (the "earlier" link)."""
    ctx = await portal.signed_in(request)
    if ctx is None:
        return portal.sign_in_first(request)
    task_id = request.path_params["task_id"]
    before = parse_before(request.query_params.get("before")) or 1
    data = await portal.run(lambda: window(ctx, task_id, before))
    return portal.render(request, ctx, "task_lines.html", {"task_id": task_id, "log": data})


async def download(portal: Portal, request: Request) -> Response:
    """``GET /tasks/{id}/log.txt``: the whole log as text, read a page at a time."""
    ctx = await portal.signed_in(request)
    if ctx is None:
        return portal.sign_in_first(request)
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
