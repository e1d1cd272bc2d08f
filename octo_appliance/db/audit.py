"""The audit log: who changed what and when. Never holds a sensitive value."""

from __future__ import annotations

import peewee

from octo_appliance.db.base import BaseModel, JSONField, utcnow


class AuditEvent(BaseModel):
    id_prefix = "evt"

    occurred_at = peewee.DateTimeField(default=utcnow, index=True)
    user_id = peewee.CharField(max_length=40, null=True, index=True)
    username = peewee.CharField(max_length=100, default="")
    #: ``create``, ``update``, ``delete``, ``login``, ``logout`` ...
    action = peewee.CharField(max_length=40)
    resource_type = peewee.CharField(max_length=60, index=True)
    resource_id = peewee.CharField(max_length=40, null=True, index=True)
    resource_name = peewee.CharField(max_length=300, default="")
    #: what changed, with sensitive values replaced by a marker
    details = JSONField(default=dict)


def record_event(
    *,
    user_id: str | None,
    username: str,
    action: str,
    resource_type: str,
    resource_id: str | None,
    resource_name: str = "",
    details: dict[str, object] | None = None,
) -> AuditEvent:
    """Append one audit record (inside the caller's transaction, so both land or neither)."""
    event: AuditEvent = AuditEvent.create_new(
        user_id=user_id,
        username=username,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        resource_name=resource_name,
        details=details or {},
    )
    return event
