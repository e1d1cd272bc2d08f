"""``/api/v1/projects`` on SQLite and PostgreSQL: CRUD, lean list, project-scoped grants."""

from __future__ import annotations

from octo_appliance.db import AuditEvent, Project, Variable
from tests.api.helpers import make_user as make_user_with_role
from tests.api.helpers import record_statements


def test_create_list_get_update_delete(api):
    created = api.post("/projects", json={"name": "Shop", "description": "the web shop"})
    assert created.status_code == 201, created.text
    project = created.json()
    assert set(project) == {"id", "name", "description", "created_at", "lifecycle", "library_sets"}
    assert project["lifecycle"] is None
    assert project["library_sets"] == []
    assert project["id"].startswith("prj_")
    assert project["description"] == "the web shop"

    assert api.get("/projects/Shop").json() == project
    assert api.get(f"/projects/{project['id']}").json() == project

    updated = api.put("/projects/Shop", json={"name": "Store"})
    assert updated.status_code == 200
    assert updated.json()["name"] == "Store"
    assert updated.json()["description"] == "the web shop"
    assert api.get("/projects/Shop").status_code == 404

    deleted = api.delete(f"/projects/{project['id']}")
    assert deleted.json() == {"id": project["id"], "deleted": True}
    assert api.get("/projects/Store").status_code == 404
    assert api.put("/projects/Store", json={"description": "x"}).status_code == 404
    assert api.delete("/projects/Store").status_code == 404


def test_delete_cascades_variables(api):
    project = api.post("/projects", json={"name": "Shop"}).json()
    api.post("/projects", json={"name": "Other"})
    variables = [
        {"name": "Plain", "value": "1"},
        {"name": "Secret", "value": "hush", "sensitive": True},
    ]
    assert api.put("/projects/Shop/variables", json={"variables": variables}).status_code == 200
    assert api.put("/projects/Other/variables", json={"variables": variables}).status_code == 200
    assert Variable.select().count() == 4
    api.delete("/projects/Shop")
    assert Variable.select().where(Variable.project == project["id"]).count() == 0
    assert Variable.select().count() == 2
    event = AuditEvent.get(AuditEvent.resource_id == project["id"], AuditEvent.action == "delete")
    assert event.details == {"variables_deleted": 2}


def test_duplicate_names_conflict(api):
    assert api.post("/projects", json={"name": "Shop"}).status_code == 201
    assert api.post("/projects", json={"name": "Blog"}).status_code == 201
    again = api.post("/projects", json={"name": "Shop"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert api.put("/projects/Blog", json={"name": "Shop"}).status_code == 409
    assert api.put("/projects/Blog", json={"name": "Blog"}).status_code == 200


def test_bad_input(api):
    for body in (
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "a\nb"},
        {"name": 7},
        {"name": "Shop", "owner": "me"},
        {"name": "Shop", "description": "d" * 10_001},
    ):
        response = api.post("/projects", json=body)
        assert response.status_code == 422, (body, response.text)
    assert api.post("/projects", json=[]).status_code == 422
    assert api.get("/projects", params={"skip": -1}).status_code == 400
    assert api.get("/projects").json() == {"items": [], "total": 0}


def test_pagination_and_name_filter(api):
    for i in range(12):
        api.post("/projects", json={"name": f"svc-{i:02d}"})
    api.post("/projects", json={"name": "Other"})
    page = api.get("/projects", params={"skip": 3, "take": 4, "name": "SVC"}).json()
    assert page["total"] == 12
    assert [p["name"] for p in page["items"]] == ["svc-03", "svc-04", "svc-05", "svc-06"]
    assert api.get("/projects", params={"take": 1}).json()["items"][0]["name"] == "Other"


def test_changes_are_audited(api):
    project = api.post("/projects", json={"name": "Shop"}).json()
    api.put("/projects/Shop", json={"description": "new"})
    events = list(
        AuditEvent.select()
        .where(AuditEvent.resource_type == "project")
        .order_by(AuditEvent.occurred_at)
    )
    assert [(e.action, e.resource_id) for e in events] == [
        ("create", project["id"]),
        ("update", project["id"]),
    ]
    assert events[1].details == {"description": "new"}


def test_viewer_reads_but_cannot_write(octo, api):
    api.post("/projects", json={"name": "Shop"})
    viewer = api.as_key(make_user_with_role(octo, "vera", "viewer"))
    assert viewer.get("/projects").json()["total"] == 1
    assert viewer.get("/projects/Shop").status_code == 200
    assert viewer.post("/projects", json={"name": "Blog"}).status_code == 403
    assert viewer.put("/projects/Shop", json={"description": "x"}).status_code == 403
    assert viewer.delete("/projects/Shop").status_code == 403
    assert Project.select().count() == 1


def test_project_scoped_deployer_sees_only_its_project(octo, api):
    shop = api.post("/projects", json={"name": "Shop"}).json()
    api.post("/projects", json={"name": "Blog"})
    deployer = api.as_key(
        make_user_with_role(octo, "dora", "project-deployer", projects=[shop["id"]])
    )
    listed = deployer.get("/projects").json()
    assert listed == {"items": [shop], "total": 1}
    assert deployer.get("/projects", params={"name": "blog"}).json()["total"] == 0
    assert deployer.get("/projects/Shop").status_code == 200
    assert deployer.get("/projects/Blog").status_code == 403
    assert deployer.put("/projects/Shop", json={"description": "mine"}).status_code == 200
    assert deployer.put("/projects/Blog", json={"description": "mine"}).status_code == 403
    # a scoped grant cannot create: the new project would be outside its scope
    refused = deployer.post("/projects", json={"name": "New"})
    assert refused.status_code == 403
    assert "hint" in refused.json()["error"]
    assert deployer.delete("/projects/Blog").status_code == 403

    unscoped = api.as_key(make_user_with_role(octo, "uma", "project-deployer"))
    assert unscoped.post("/projects", json={"name": "New"}).status_code == 201
    assert unscoped.get("/projects").json()["total"] == 3


def test_requires_authentication(api):
    api.post("/projects", json={"name": "Shop"})
    anonymous = api.as_key(None)
    assert anonymous.get("/projects").status_code == 401
    assert anonymous.get("/projects/Shop").status_code == 401
    assert anonymous.post("/projects", json={"name": "Blog"}).status_code == 401
    assert anonymous.put("/projects/Shop", json={"name": "Blog"}).status_code == 401
    assert anonymous.delete("/projects/Shop").status_code == 401
    assert api.as_key("OCTO-wrong").get("/projects").status_code == 401


def test_list_is_one_count_and_one_page_query(octo, api, monkeypatch):
    Project.insert_many(
        [{"id": f"prj_{i:012x}", "name": f"p{i:03d}"} for i in range(120)]
    ).execute()
    api.get("/projects")  # warm the principal cache, so only the list's own queries remain
    statements = record_statements(octo, monkeypatch)
    page = api.get("/projects", params={"take": 100}).json()
    assert page["total"] == 120
    assert len(page["items"]) == 100
    assert len([s for s in statements if '"project"' in s]) == 2, statements


def test_lifecycle_and_library_sets(api):
    api.post("/environments", json={"name": "Dev"})
    phases = [{"name": "A", "environments": ["Dev"]}]
    main = api.post("/lifecycles", json={"name": "Main", "phases": phases}).json()
    other = api.post("/lifecycles", json={"name": "Other", "phases": phases}).json()
    common = api.post("/library-variable-sets", json={"name": "Common"}).json()
    mail = api.post("/library-variable-sets", json={"name": "Mail"}).json()

    created = api.post(
        "/projects",
        json={"name": "Shop", "lifecycle": "Main", "library_sets": ["Mail", common["id"], "Mail"]},
    )
    assert created.status_code == 201, created.text
    project = created.json()
    assert project["lifecycle"] == main["id"]
    assert project["library_sets"] == [mail["id"], common["id"]]  # order kept, once each
    assert api.get("/projects/Shop").json() == project
    assert api.get("/projects").json()["items"] == [project]

    kept = api.put("/projects/Shop", json={"description": "x"}).json()
    assert (kept["lifecycle"], kept["library_sets"]) == (main["id"], [mail["id"], common["id"]])
    moved = api.put("/projects/Shop", json={"lifecycle": other["id"], "library_sets": []}).json()
    assert (moved["lifecycle"], moved["library_sets"]) == (other["id"], [])
    reset = api.put("/projects/Shop", json={"lifecycle": None}).json()
    assert reset["lifecycle"] is None  # null: back to the default lifecycle

    plain = api.post("/projects", json={"name": "Blog"}).json()
    assert (plain["lifecycle"], plain["library_sets"]) == (None, [])
    listed = api.get("/projects").json()["items"]
    assert [p["name"] for p in listed] == ["Blog", "Shop"]
    assert listed[1]["lifecycle"] is None

    event = AuditEvent.get(AuditEvent.resource_id == project["id"], AuditEvent.action == "create")
    assert event.details["lifecycle"] == main["id"]
    assert event.details["library_sets"] == [mail["id"], common["id"]]


def test_unknown_lifecycle_or_library_set_is_422(api):
    api.post("/projects", json={"name": "Shop"})
    for body, field in (
        ({"name": "New", "lifecycle": "Nope"}, "lifecycle"),
        ({"name": "New", "library_sets": ["Nope"]}, "library_sets"),
    ):
        response = api.post("/projects", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == field
        update = {k: v for k, v in body.items() if k != "name"}
        assert api.put("/projects/Shop", json=update).status_code == 422
    assert api.get("/projects/New").status_code == 404
    assert api.post("/projects", json={"name": "X", "lifecycle": ""}).status_code == 422
    assert api.post("/projects", json={"name": "X", "library_sets": "Common"}).status_code == 422
