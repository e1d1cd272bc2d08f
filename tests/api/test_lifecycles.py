"""``/api/v1/lifecycles`` on SQLite and PostgreSQL: phases, their rules, use by projects."""

from __future__ import annotations

import pytest

from octo_appliance.db import AuditEvent, Lifecycle
from tests.api.helpers import make_user


@pytest.fixture
def envs(api):  # type: ignore[no-untyped-def]
    """Environments Dev, Test, Prod, Stage: name -> id."""
    return {
        name: api.post("/environments", json={"name": name, "sort_order": order}).json()["id"]
        for order, name in enumerate(("Dev", "Test", "Prod", "Stage"))
    }


PHASES = [
    {"name": "Development", "environments": ["Dev"]},
    {"name": "Testing", "environments": ["Test", "Stage"], "minimum_environments": 1},
    {"name": "Production", "environments": ["Prod"], "automatic": True},
]


def test_create_get_list_update_delete(api, envs):
    created = api.post(
        "/lifecycles", json={"name": "Standard", "description": "d", "phases": PHASES}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("lfc_")
    assert body["phases"] == [
        {
            "name": "Development",
            "environments": [envs["Dev"]],
            "minimum_environments": 0,
            "automatic": False,
        },
        {
            "name": "Testing",
            "environments": [envs["Test"], envs["Stage"]],
            "minimum_environments": 1,
            "automatic": False,
        },
        {
            "name": "Production",
            "environments": [envs["Prod"]],
            "minimum_environments": 0,
            "automatic": True,
        },
    ]
    assert api.get("/lifecycles/Standard").json() == body
    assert api.get(f"/lifecycles/{body['id']}").json() == body
    assert api.get("/lifecycles").json() == {"items": [body], "total": 1}

    renamed = api.put("/lifecycles/Standard", json={"name": "Main"})
    assert renamed.status_code == 200
    assert renamed.json()["phases"] == body["phases"]  # left out: kept
    short = api.put("/lifecycles/Main", json={"phases": [{"name": "All", "environments": ["Dev"]}]})
    assert short.json()["phases"] == [
        {
            "name": "All",
            "environments": [envs["Dev"]],
            "minimum_environments": 0,
            "automatic": False,
        }
    ]
    assert api.get("/lifecycles/Standard").status_code == 404
    assert api.delete("/lifecycles/Main").json() == {"id": body["id"], "deleted": True}
    assert api.get("/lifecycles/Main").status_code == 404
    actions = [
        e.action
        for e in AuditEvent.select()
        .where(AuditEvent.resource_type == "lifecycle")
        .order_by(AuditEvent.occurred_at)
    ]
    assert actions == ["create", "update", "update", "delete"]


def test_an_environment_belongs_to_one_phase(api, envs):
    twice = api.post(
        "/lifecycles",
        json={
            "name": "Bad",
            "phases": [
                {"name": "One", "environments": ["Dev", "Test"]},
                {"name": "Two", "environments": [envs["Test"]]},
            ],
        },
    )
    assert twice.status_code == 422
    assert twice.json()["error"]["details"] == [
        {
            "field": "phases.1.environments",
            "message": f"environment '{envs['Test']}' is already in phase 0",
        }
    ]
    assert not Lifecycle.select().exists()


def test_phase_rules(api, envs):
    cases = [
        ([{"name": "A", "environments": ["Nowhere"]}], "phases.environments"),
        (
            [{"name": "A", "environments": ["Dev"]}, {"name": "a", "environments": ["Test"]}],
            "phases.1.name",
        ),
        (
            [{"name": "A", "environments": ["Dev"], "minimum_environments": 2}],
            "phases.0.minimum_environments",
        ),
    ]
    for phases, field in cases:
        response = api.post("/lifecycles", json={"name": "X", "phases": phases})
        assert response.status_code == 422, (phases, response.text)
        assert response.json()["error"]["details"][0]["field"] == field
    for body in (
        {"name": "X", "phases": []},
        {"name": "X", "phases": [{"name": "A", "environments": []}]},
        {
            "name": "X",
            "phases": [{"name": "A", "environments": ["Dev"], "minimum_environments": -1}],
        },
        {"name": "X", "phases": [{"name": "A", "environments": ["Dev"], "colour": "red"}]},
        {"name": "", "phases": [{"name": "A", "environments": ["Dev"]}]},
        {"phases": [{"name": "A", "environments": ["Dev"]}]},
    ):
        assert api.post("/lifecycles", json=body).status_code == 422, body
    assert api.put("/lifecycles/Nope", json={}).status_code == 404


def test_duplicate_names_conflict(api, envs):
    one = {"name": "Main", "phases": [{"name": "A", "environments": ["Dev"]}]}
    assert api.post("/lifecycles", json=one).status_code == 201
    assert api.post("/lifecycles", json=one).status_code == 409
    assert api.post("/lifecycles", json={**one, "name": "Other"}).status_code == 201
    assert api.put("/lifecycles/Other", json={"name": "Main"}).status_code == 409


def test_deleted_environments_leave_the_phases(api, envs):
    api.post(
        "/lifecycles",
        json={
            "name": "Main",
            "phases": [
                {"name": "A", "environments": ["Dev", "Stage"]},
                {"name": "B", "environments": ["Test"]},
            ],
        },
    )
    assert api.delete("/environments/Test").status_code == 200
    assert api.delete("/environments/Stage").status_code == 200
    got = api.get("/lifecycles/Main").json()["phases"]
    assert got == [
        {"name": "A", "environments": [envs["Dev"]], "minimum_environments": 0, "automatic": False}
    ]


def test_in_use_by_a_project_cannot_be_deleted(api, envs):
    api.post(
        "/lifecycles", json={"name": "Main", "phases": [{"name": "A", "environments": ["Dev"]}]}
    )
    api.post("/projects", json={"name": "Shop", "lifecycle": "Main"})
    refused = api.delete("/lifecycles/Main")
    assert refused.status_code == 409
    assert "Shop" in refused.json()["error"]["message"]
    assert api.put("/projects/Shop", json={"lifecycle": None}).status_code == 200
    assert api.delete("/lifecycles/Main").status_code == 200


def test_permissions(octo, api, envs):
    api.post(
        "/lifecycles", json={"name": "Main", "phases": [{"name": "A", "environments": ["Dev"]}]}
    )
    body = {"name": "New", "phases": [{"name": "A", "environments": ["Dev"]}]}
    viewer = api.as_key(make_user(octo, "vera", "viewer"))
    assert viewer.get("/lifecycles").json()["total"] == 1
    assert viewer.get("/lifecycles/Main").status_code == 200
    assert viewer.post("/lifecycles", json=body).status_code == 403
    assert viewer.put("/lifecycles/Main", json={"description": "x"}).status_code == 403
    assert viewer.delete("/lifecycles/Main").status_code == 403

    project = api.post("/projects", json={"name": "Shop"}).json()
    scoped = api.as_key(make_user(octo, "sam", "project-deployer", projects=[project["id"]]))
    assert scoped.get("/lifecycles/Main").status_code == 200
    # a lifecycle serves every project: changing it needs an unscoped grant
    assert scoped.post("/lifecycles", json=body).status_code == 403
    assert scoped.put("/lifecycles/Main", json={"description": "x"}).status_code == 403
    unscoped = api.as_key(make_user(octo, "uma", "project-deployer"))
    assert unscoped.post("/lifecycles", json=body).status_code == 201
    assert api.as_key(None).get("/lifecycles").status_code == 401
