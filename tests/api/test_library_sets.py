"""``/api/v1/library-variable-sets`` on SQLite and PostgreSQL.

The variable rules are those of project variables (shared code); these tests check that the
set's variables get them too: sealing bound to the library row, id-keeping round trips, scopes
(including steps), per-field 422s; plus the set's own CRUD and its use by projects.
"""

from __future__ import annotations

import secrets

import pytest

from octo_appliance.db import AuditEvent, LibraryVariable, LibraryVariableSet
from octo_appliance.exceptions import VaultError
from tests.api.helpers import all_audit_text, make_user


@pytest.fixture
def world(api):  # type: ignore[no-untyped-def]
    ids = {"Dev": api.post("/environments", json={"name": "Dev"}).json()["id"]}
    target = {"name": "web-01", "environments": ["Dev"], "roles": ["web"]}
    ids["web-01"] = api.post("/targets", json=target).json()["id"]
    ids["Common"] = api.post("/library-variable-sets", json={"name": "Common"}).json()["id"]
    return ids


def put(api, variables, ref="Common"):  # type: ignore[no-untyped-def]
    return api.put(f"/library-variable-sets/{ref}/variables", json={"variables": variables})


def test_crud(api):
    created = api.post("/library-variable-sets", json={"name": "Mail", "description": "smtp"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("lvs_")
    assert set(body) == {"id", "name", "description", "created_at"}
    assert api.get("/library-variable-sets/Mail").json() == body
    assert api.get("/library-variable-sets").json() == {"items": [body], "total": 1}
    assert api.post("/library-variable-sets", json={"name": "Mail"}).status_code == 409
    renamed = api.put(f"/library-variable-sets/{body['id']}", json={"name": "Smtp"}).json()
    assert renamed["name"] == "Smtp"
    assert renamed["description"] == "smtp"
    put(api, [{"name": "Host", "value": "mx"}], ref="Smtp")
    assert api.delete("/library-variable-sets/Smtp").json() == {"id": body["id"], "deleted": True}
    assert not LibraryVariable.select().exists()
    assert api.get("/library-variable-sets/Smtp").status_code == 404
    assert api.get("/library-variable-sets/Smtp/variables").status_code == 404
    event = AuditEvent.get(AuditEvent.resource_id == body["id"], AuditEvent.action == "delete")
    assert event.details == {"variables_deleted": 1}


def test_variables_are_sealed_and_round_trip(octo, api, world):
    secret = "lib-secret-" + secrets.token_hex(8)
    response = put(
        api,
        [
            {"name": "Password", "value": secret, "sensitive": True},
            {
                "name": "Url",
                "value": "http://dev",
                "scope": {
                    "environments": ["Dev"],
                    "targets": ["web-01"],
                    "roles": ["web"],
                    "steps": ["Deploy"],
                },
            },
        ],
    )
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["library_set_id"] == world["Common"]
    assert secret not in response.text
    password, url = got["variables"]
    assert password["value"] is None and password["has_value"] is True
    assert password["id"].startswith("lvr_")
    assert url["scope"] == {
        "environments": [world["Dev"]],
        "roles": ["web"],
        "targets": [world["web-01"]],
        "steps": ["Deploy"],
    }
    row = LibraryVariable.get_by_id(password["id"])
    vault = octo.appliance.vault
    assert vault.open(row.sealed_value, row.aad("sealed_value")) == secret
    assert row.aad("sealed_value").startswith(b"library_variable/")
    with pytest.raises(VaultError):  # bound to its row
        vault.open(row.sealed_value, LibraryVariable(id=url["id"]).aad("sealed_value"))

    fetched = api.get("/library-variable-sets/Common/variables").json()
    assert fetched == got
    again = api.put("/library-variable-sets/Common/variables", json=fetched)
    assert again.status_code == 200
    assert again.json() == got  # ids and the sealed value kept
    assert LibraryVariable.get_by_id(password["id"]).sealed_value == row.sealed_value
    assert secret not in all_audit_text()


def test_same_rules_as_project_variables(api, world):
    same = put(
        api,
        [
            {"name": "A", "value": "1", "scope": {"steps": ["x"]}},
            {"name": "a", "value": "2", "scope": {"steps": ["x"]}},
            {"name": "B", "sensitive": True},
            {"name": "C", "scope": {"environments": ["Nowhere"]}},
            {"id": "lvr_000000000000", "name": "D"},
        ],
    )
    assert same.status_code == 422
    assert [d["field"] for d in same.json()["error"]["details"]] == [
        "variables.1.name",
        "variables.2.value",
        "variables.3.scope.environments",
        "variables.4.id",
    ]
    assert "this library set" in same.json()["error"]["details"][3]["message"]
    other = api.post("/library-variable-sets", json={"name": "Other"}).json()
    misdirected = api.put(
        "/library-variable-sets/Common/variables",
        json={"library_set_id": other["id"], "variables": []},
    )
    assert misdirected.status_code == 422
    assert misdirected.json()["error"]["details"][0]["field"] == "library_set_id"
    # a project's variable id is not this set's
    api.post("/projects", json={"name": "Shop"})
    project_var = api.put(
        "/projects/Shop/variables", json={"variables": [{"name": "A", "value": "1"}]}
    ).json()["variables"][0]
    assert put(api, [{"id": project_var["id"], "name": "A"}]).status_code == 422
    assert api.get("/library-variable-sets/Common/variables").json()["variables"] == []


def test_included_set_cannot_be_deleted(api, world):
    api.post("/projects", json={"name": "Shop", "library_sets": ["Common"]})
    api.post("/projects", json={"name": "Blog", "library_sets": ["Common"]})
    refused = api.delete("/library-variable-sets/Common")
    assert refused.status_code == 409
    assert "Blog, Shop" in refused.json()["error"]["message"]
    api.put("/projects/Shop", json={"library_sets": []})
    api.put("/projects/Blog", json={"library_sets": []})
    assert api.delete("/library-variable-sets/Common").status_code == 200
    assert not LibraryVariableSet.select().exists()


def test_permissions(octo, api, world):
    put(api, [{"name": "A", "value": "1"}])
    viewer = api.as_key(make_user(octo, "vera", "viewer"))
    assert viewer.get("/library-variable-sets").json()["total"] == 1
    assert viewer.get("/library-variable-sets/Common/variables").status_code == 200
    assert put(viewer, []).status_code == 403
    assert viewer.post("/library-variable-sets", json={"name": "X"}).status_code == 403
    assert viewer.delete("/library-variable-sets/Common").status_code == 403

    project = api.post("/projects", json={"name": "Shop"}).json()
    scoped = api.as_key(make_user(octo, "sam", "project-deployer", projects=[project["id"]]))
    assert scoped.get("/library-variable-sets/Common/variables").status_code == 200
    # a set reaches every project including it: editing needs an unscoped grant
    assert put(scoped, []).status_code == 403
    assert scoped.put("/library-variable-sets/Common", json={"name": "Y"}).status_code == 403
    deployer = api.as_key(make_user(octo, "dora", "project-deployer"))
    assert put(deployer, [{"name": "B", "value": "2"}]).status_code == 200
    assert api.as_key(None).get("/library-variable-sets").status_code == 401
    assert len(api.get("/library-variable-sets/Common/variables").json()["variables"]) == 1
