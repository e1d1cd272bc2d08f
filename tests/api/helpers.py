"""Shared setup for API tests: users with roles, cookie sessions, audit look-ups.

Setup goes straight to the models (fast, and independent of the endpoints under test); the
behaviour under test always goes through HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from starlette.testclient import TestClient

from octo_appliance.db import AuditEvent, Team, TeamMember, TeamRole, User
from octo_appliance.db.api_keys import create_api_key
from octo_appliance.security.passwords import hash_password
from octo_appliance.testing import ApiClient, OctoTestAppliance


def make_user(
    octo: OctoTestAppliance,
    username: str,
    role: str | None = None,
    environments: Iterable[str] = (),
    projects: Iterable[str] = (),
    *,
    password: str | None = None,
    active: bool = True,
) -> str:
    """Create ``username`` (in a team of their own holding ``role``, if given); return a key."""
    user = User.create_new(
        username=username,
        display_name=username.title(),
        password_hash=hash_password(password) if password else "",
        is_active=active,
    )
    if role is not None:
        team = Team.create_new(name=f"{username} team")
        TeamRole.create_new(
            team=team, role=role, environments=list(environments), projects=list(projects)
        )
        TeamMember.create_new(team=team, user=user)
    _, key = create_api_key(user, "test")
    octo.appliance.security_changed()
    return key


def user_id(username: str) -> str:
    return str(User.get(User.username == username).id)


def client_as(octo: OctoTestAppliance, key: str | None) -> ApiClient:
    return octo.api.as_key(key)


def session_client(octo: OctoTestAppliance) -> TestClient:
    """A separate HTTP client with its own cookie jar, for cookie-session tests."""
    return TestClient(octo.client.app, base_url="https://testserver")


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def events(**where: Any) -> list[AuditEvent]:
    """Audit rows matching the given column values, oldest first."""
    query = AuditEvent.select()
    for column, value in where.items():
        query = query.where(getattr(AuditEvent, column) == value)
    return list(query.order_by(AuditEvent.occurred_at))


def all_audit_text() -> str:
    """Every audit row rendered as text, to prove a secret appears nowhere in the log."""
    parts = []
    for event in AuditEvent.select():
        parts.append(
            repr(
                (
                    event.username,
                    event.action,
                    event.resource_type,
                    event.resource_id,
                    event.resource_name,
                    event.details,
                )
            )
        )
    return "\n".join(parts)


def record_statements(octo: OctoTestAppliance, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL statements the appliance runs from now on, in order (for query-count tests)."""
    statements: list[str] = []
    execute_sql = octo.appliance.db.execute_sql

    def counting(sql: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return execute_sql(sql, *args, **kwargs)

    monkeypatch.setattr(octo.appliance.db, "execute_sql", counting)
    return statements
