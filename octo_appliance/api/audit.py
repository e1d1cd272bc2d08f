"""``GET /api/v1/audit``: who changed what and when, newest first.

Read-only by design: the log is appended to inside the transaction of each change and no
endpoint edits or deletes it. It spans every project and environment, so reading it needs an
unscoped ``audit.view``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Line, ListQuery, Out, Page
from octo_appliance.api.teams import require_global
from octo_appliance.db import AuditEvent
from octo_appliance.db.base import iso
from octo_appliance.exceptions import BadRequest
from octo_appliance.security.permissions import Permission

router = Router("audit")


def _parse_moment(value: str | None) -> datetime | None:
    """ISO 8601 only (no bare numbers); a zone-less moment means UTC; stored as naive UTC."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 date or datetime (e.g. 2024-05-01T12:00:00Z)") from None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise ValueError("the moment is out of range") from None
    return moment


class AuditQuery(ListQuery):
    """``?name=`` matches the resource name; the other filters are exact."""

    user: Line | None = Field(None, max_length=100, description="User id or username.")
    resource_type: Line | None = Field(None, max_length=60, description="e.g. environment, user.")
    resource_id: Line | None = Field(None, max_length=40)
    action: Line | None = Field(None, max_length=40, description="e.g. create, update, delete.")
    since: Line | None = Field(
        None,
        max_length=40,
        description="ISO 8601; events at or after.",
        json_schema_extra={"format": "date-time"},
    )
    until: Line | None = Field(
        None,
        max_length=40,
        description="ISO 8601; events before.",
        json_schema_extra={"format": "date-time"},
    )

    @field_validator("since", "until")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        _parse_moment(value)
        return value


class AuditEventOut(Out):
    id: str
    occurred_at: str
    user_id: str | None
    username: str
    action: str
    resource_type: str
    resource_id: str | None
    resource_name: str
    details: dict[str, Any]


def to_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred_at": iso(event.occurred_at),
        "user_id": event.user_id,
        "username": event.username,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "resource_name": event.resource_name,
        "details": event.details or {},
    }


@router.get(
    "/audit", summary="The audit log, newest first", query=AuditQuery, response=Page[AuditEventOut]
)
def list_audit(ctx: RequestContext, query: AuditQuery) -> dict[str, Any]:
    require_global(ctx, Permission.AUDIT_VIEW)
    rows = AuditEvent.select()
    if query.user:
        # by id, or by the username recorded at the time (so deleted users stay findable)
        rows = rows.where((AuditEvent.user_id == query.user) | (AuditEvent.username == query.user))
    for column, value in (
        (AuditEvent.resource_type, query.resource_type),
        (AuditEvent.resource_id, query.resource_id),
        (AuditEvent.action, query.action),
    ):
        if value:
            rows = rows.where(column == value)
    if query.name:
        rows = rows.where(AuditEvent.resource_name.contains(query.name))
    since, until = _parse_moment(query.since), _parse_moment(query.until)
    if since is not None and until is not None and since >= until:
        raise BadRequest("'since' must be earlier than 'until'", hint="swap the two values")
    if since is not None:
        rows = rows.where(AuditEvent.occurred_at >= since)
    if until is not None:
        rows = rows.where(AuditEvent.occurred_at < until)
    total = rows.count()
    page = (
        rows.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
        .offset(query.skip)
        .limit(query.take)
    )
    return {"items": [to_json(event) for event in page], "total": total}
