"""The audit log: who changed what and when, newest first, with filters and paging.

A GET form: the filters are the query of ``GET /api/v1/audit`` (actor, action, resource type
and name, a time range), so a filtered page is a deep link. A wrong value (a date that is not
one) is shown next to its field, with what was typed kept.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.audit import AuditQuery, list_audit
from octo_appliance.api.context import RequestContext
from octo_appliance.exceptions import ApiError
from octo_appliance.portal.forms import PROBLEM, field_errors, refusal_errors, validate
from octo_appliance.portal.session import signed_in

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

FILTERS = ("user", "action", "resource_type", "name", "since", "until")
PAGE_SIZE = 50


def _details(event: dict[str, Any]) -> str:
    """An event's details, compact (they never hold a secret: see ``RequestContext.audit``)."""
    return json.dumps(event["details"], separators=(", ", ": "), sort_keys=True)[:500]


def _pages(typed: dict[str, str], skip: int, total: int) -> dict[str, str | None]:
    """Links to the previous and next page, keeping the filters."""
    kept = {k: v for k, v in typed.items() if v}

    def link(at: int) -> str:
        return "/audit?" + urlencode({**kept, "skip": at}) if at else "/audit?" + urlencode(kept)

    return {
        "previous": link(max(skip - PAGE_SIZE, 0)) if skip > 0 else None,
        "next": link(skip + PAGE_SIZE) if skip + PAGE_SIZE < total else None,
    }


@signed_in
async def show(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /audit?user=&action=&resource_type=&name=&since=&until=&skip=``."""
    typed = {key: request.query_params.get(key, "").strip() for key in FILTERS}
    skip = request.query_params.get("skip", "0")
    values: dict[str, Any] = {k: v for k, v in typed.items() if v}
    query, details = validate(AuditQuery, {**values, "skip": skip, "take": PAGE_SIZE})
    errors = field_errors(details, (*FILTERS, "skip"))
    page: dict[str, Any] = {"items": [], "total": 0}
    if query is not None:
        try:
            page = await portal.run(lambda: list_audit(ctx, query))
        except ApiError as exc:
            if exc.status_code != 400:
                raise
            # the one 400 left after validation: a time range the wrong way round
            errors = {"until": refusal_errors(exc, ())[PROBLEM]}
    start = query.skip if query is not None else 0
    events = [{**event, "summary": _details(event)} for event in page["items"]]
    context = {
        "typed": typed,
        "errors": errors,
        "events": events,
        "total": page["total"],
        "first": start + 1,
        "last": start + len(events),
        **_pages(typed, start, page["total"]),
    }
    return portal.render(request, ctx, "admin/audit.html", context, 422 if errors else 200)
