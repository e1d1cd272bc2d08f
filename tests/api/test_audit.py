"""``GET /audit``: filters, ordering, paging, access; and that writes are recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from octo_appliance.db import AuditEvent
from tests.api.helpers import client_as, make_user, user_id


def _write_some(api):
    api.post("/environments", json={"name": "Dev"})
    api.post("/environments", json={"name": "Prod"})
    api.put("/environments/Dev", json={"description": "x"})
    api.delete("/environments/Prod")


def test_newest_first_and_paginated(api):
    _write_some(api)
    page = api.get("/audit").json()
    assert page["total"] == 4
    actions = [(e["action"], e["resource_name"]) for e in page["items"]]
    assert actions == [
        ("delete", "Prod"),
        ("update", "Dev"),
        ("create", "Prod"),
        ("create", "Dev"),
    ]
    moments = [e["occurred_at"] for e in page["items"]]
    assert moments == sorted(moments, reverse=True)
    assert all(m.endswith("Z") for m in moments)
    second = api.get("/audit", params={"skip": 1, "take": 2}).json()
    assert second["total"] == 4
    assert [e["id"] for e in second["items"]] == [e["id"] for e in page["items"][1:3]]


def test_filters(octo, api):
    ops = client_as(octo, make_user(octo, "ops", "administrator"))
    _write_some(api)
    ops.post("/environments", json={"name": "Test"})
    ops_id = user_id("ops")

    by_name = api.get("/audit", params={"user": "ops"}).json()
    by_id = api.get("/audit", params={"user": ops_id}).json()
    assert by_name == by_id
    assert by_name["total"] == 1
    assert by_name["items"][0]["username"] == "ops"
    assert by_name["items"][0]["user_id"] == ops_id

    admin_events = api.get("/audit", params={"user": "admin"}).json()
    assert admin_events["total"] == 4
    dev_id = api.get("/environments/Dev").json()["id"]
    for_dev = api.get("/audit", params={"resource_id": dev_id}).json()
    assert [e["action"] for e in for_dev["items"]] == ["update", "create"]
    assert api.get("/audit", params={"action": "delete"}).json()["total"] == 1
    assert api.get("/audit", params={"resource_type": "environment"}).json()["total"] == 5
    assert api.get("/audit", params={"resource_type": "user"}).json()["total"] == 0
    assert api.get("/audit", params={"name": "pro"}).json()["total"] == 2
    combined = api.get(
        "/audit", params={"user": "admin", "action": "create", "resource_type": "environment"}
    ).json()
    assert combined["total"] == 2


def test_time_window(api):
    old = AuditEvent.create_new(
        occurred_at=datetime(2020, 1, 1, 12, 0, 0),
        user_id=None,
        username="cli",
        action="create",
        resource_type="api-key",
        resource_id="key_old",
    )
    _write_some(api)

    def total(**params):
        response = api.get("/audit", params=params)
        assert response.status_code == 200, response.text
        return response.json()["total"]

    assert total() == 5
    assert total(until="2021-01-01") == 1
    assert total(since="2021-01-01T00:00:00Z") == 4
    assert total(since="2020-01-01T12:00:00Z", until="2020-01-01T12:00:01Z") == 1
    assert total(since="2020-01-01T12:00:00.001Z") == 4  # a millisecond later excludes it
    assert total(since="2020-01-01T13:00:00+01:00", until="2020-01-01T12:00:01Z") == 1  # zones
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert total(since=soon) == 0
    assert api.get("/audit", params={"resource_id": old.id}).json()["total"] == 0
    assert api.get("/audit", params={"resource_id": "key_old"}).json()["total"] == 1


def test_bad_query_is_400(api):
    for params in (
        {"since": "yesterday"},
        {"until": "2024-13-01"},
        {"since": "1700000000"},  # no bare numbers: ISO 8601 only
        {"since": "2024-02-01", "until": "2024-01-01"},
        {"take": "0"},
        {"skip": "-1"},
    ):
        response = api.get("/audit", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "bad_request"
    details = api.get("/audit", params={"since": "yesterday"}).json()["error"]["details"]
    assert details[0]["field"] == "since"


def test_only_administrators_read_it(octo, api):
    project = api.post("/projects", json={"name": "Web"}).json()["id"]
    for role, projects in (("viewer", ()), ("project-deployer", ()), ("administrator", [project])):
        caller = client_as(
            octo, make_user(octo, f"u-{role}-{len(projects)}", role, projects=projects)
        )
        assert caller.get("/audit").status_code == 403, role
    assert client_as(octo, None).get("/audit").status_code == 401
    assert api.get("/audit").status_code == 200


def test_reading_is_not_audited_and_failures_leave_no_event(octo, api):
    api.get("/environments")
    api.get("/audit")
    assert api.get("/audit").json()["total"] == 0
    api.post("/environments", json={"name": "Dev"})
    assert api.post("/environments", json={"name": "Dev"}).status_code == 409  # rolled back
    viewer = client_as(octo, make_user(octo, "vic", "viewer"))
    assert viewer.post("/environments", json={"name": "X"}).status_code == 403
    assert api.get("/audit").json()["total"] == 1


def test_every_write_to_security_resources_is_recorded(octo, api):
    """users, teams, api keys: each POST/PUT/DELETE leaves one event naming who and what."""
    admin = user_id("admin")
    user = api.post("/users", json={"username": "bob", "password": "a long password!"}).json()
    api.put("/users/bob", json={"display_name": "Bob"})
    team = api.post("/teams", json={"name": "Ops", "members": ["bob"]}).json()
    api.put("/teams/Ops", json={"roles": [{"role": "viewer"}]})
    key = api.post("/api-keys", json={"name": "ci", "user": "bob"}).json()
    api.delete(f"/api-keys/{key['id']}")
    api.delete("/teams/Ops")
    api.delete("/users/bob")

    got = [
        (e["action"], e["resource_type"], e["resource_id"], e["user_id"], e["username"])
        for e in reversed(api.get("/audit").json()["items"])
    ]
    assert got == [
        ("create", "user", user["id"], admin, "admin"),
        ("update", "user", user["id"], admin, "admin"),
        ("create", "team", team["id"], admin, "admin"),
        ("update", "team", team["id"], admin, "admin"),
        ("create", "api-key", key["id"], admin, "admin"),
        ("delete", "api-key", key["id"], admin, "admin"),
        ("delete", "team", team["id"], admin, "admin"),
        ("delete", "user", user["id"], admin, "admin"),
    ]
    assert "a long password!" not in api.get("/audit").text
    assert key["key"] not in api.get("/audit").text
