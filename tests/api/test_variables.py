"""``/api/v1/projects/{ref}/variables`` on SQLite and PostgreSQL.

Sensitive values are sealed in the database, never returned, survive a GET-modify-PUT round
trip, and never reach the audit log or an error message.
"""

from __future__ import annotations

import json
import secrets

import pytest

from octo_appliance.db import AuditEvent, Variable
from octo_appliance.exceptions import VaultError
from tests.api.helpers import make_user as make_user_with_role


@pytest.fixture
def world(api):  # type: ignore[no-untyped-def]
    """Projects Shop and Blog, environments Dev and Prod, target web-01: name -> id."""
    ids = {}
    for name in ("Shop", "Blog"):
        ids[name] = api.post("/projects", json={"name": name}).json()["id"]
    for name in ("Dev", "Prod"):
        ids[name] = api.post("/environments", json={"name": name}).json()["id"]
    target = {"name": "web-01", "environments": ["Dev"], "roles": ["web"]}
    ids["web-01"] = api.post("/targets", json=target).json()["id"]
    return ids


def put(api, variables, project="Shop"):  # type: ignore[no-untyped-def]
    return api.put(f"/projects/{project}/variables", json={"variables": variables})


def stored(variable_id):  # type: ignore[no-untyped-def]
    return Variable.get_by_id(variable_id)


def test_empty_set(api, world):
    assert api.get("/projects/Shop/variables").json() == {
        "project_id": world["Shop"],
        "variables": [],
    }
    assert api.get(f"/projects/{world['Shop']}/variables").status_code == 200
    assert api.get("/projects/Nope/variables").status_code == 404
    assert put(api, [], project="Nope").status_code == 404


def test_put_and_get(octo, api, world):
    secret = "s3cret " + secrets.token_hex(8) + "\n"
    response = put(
        api,
        [
            {"name": "Url", "value": "  http://dev  ", "scope": {"environments": ["Dev"]}},
            {"name": "Url", "value": "http://prod", "scope": {"environments": [world["Prod"]]}},
            {"name": "Password", "value": secret, "sensitive": True},
            {
                "name": "Port",
                "value": "8080",
                "scope": {"roles": ["web", "web"], "targets": ["web-01"]},
            },
            {"name": "Unset", "value": None},
        ],
    )
    assert response.status_code == 200, response.text
    got = response.json()
    assert got == api.get("/projects/Shop/variables").json()
    assert got["project_id"] == world["Shop"]
    rows = got["variables"]
    assert [v["name"] for v in rows] == ["Url", "Url", "Password", "Port", "Unset"]
    assert all(v["id"].startswith("var_") for v in rows)
    assert rows[0]["value"] == "  http://dev  "  # values are kept byte for byte
    assert rows[0]["scope"] == {
        "environments": [world["Dev"]],
        "roles": [],
        "targets": [],
        "steps": [],
    }
    assert rows[1]["scope"]["environments"] == [world["Prod"]]
    assert rows[2] == {
        "id": rows[2]["id"],
        "name": "Password",
        "value": None,
        "sensitive": True,
        "has_value": True,
        "scope": {"environments": [], "roles": [], "targets": [], "steps": []},
    }
    assert rows[3]["scope"] == {
        "environments": [],
        "roles": ["web"],
        "targets": [world["web-01"]],
        "steps": [],
    }
    assert rows[4]["has_value"] is False
    assert secret not in response.text

    row = stored(rows[2]["id"])
    assert row.value is None
    assert secret not in row.sealed_value
    vault = octo.appliance.vault
    assert vault.open(row.sealed_value, row.aad("sealed_value")) == secret
    with pytest.raises(VaultError):  # bound to its row: a copy elsewhere does not open
        vault.open(row.sealed_value, stored(rows[0]["id"]).aad("sealed_value"))
    assert stored(rows[0]["id"]).sealed_value is None


def test_round_trip_keeps_sealed_values_and_ids(octo, api, world):
    first = put(
        api,
        [
            {"name": "Password", "value": "hunter2", "sensitive": True},
            {"name": "Plain", "value": "1"},
        ],
    ).json()["variables"]
    before = stored(first[0]["id"]).sealed_value

    fetched = api.get("/projects/Shop/variables").json()["variables"]
    fetched[1]["value"] = "2"
    fetched.append({"name": "New", "value": "3"})
    again = put(api, fetched)
    assert again.status_code == 200, again.text
    after = again.json()["variables"]
    assert [v["id"] for v in after[:2]] == [v["id"] for v in first]
    assert after[1]["value"] == "2"
    assert after[0]["has_value"] is True
    row = stored(first[0]["id"])
    assert row.sealed_value == before
    assert octo.appliance.vault.open(row.sealed_value, row.aad("sealed_value")) == "hunter2"

    # a new value replaces the sealed one; reordering keeps ids
    changed = put(
        api,
        [
            {"id": after[2]["id"], "name": "New", "value": "3"},
            {"id": first[0]["id"], "name": "Password", "value": "correct horse", "sensitive": True},
        ],
    ).json()["variables"]
    assert [v["name"] for v in changed] == ["New", "Password"]
    row = stored(first[0]["id"])
    assert octo.appliance.vault.open(row.sealed_value, row.aad("sealed_value")) == "correct horse"
    assert not Variable.select().where(Variable.id == first[1]["id"]).exists()


def test_making_a_sensitive_variable_plain_does_not_reveal_it(api, world):
    var = put(api, [{"name": "Token", "value": "abc", "sensitive": True}]).json()["variables"][0]
    plain = put(api, [{"id": var["id"], "name": "Token", "value": None, "sensitive": False}])
    assert plain.status_code == 200
    assert plain.json()["variables"][0] == {
        "id": var["id"],
        "name": "Token",
        "value": None,
        "sensitive": False,
        "has_value": False,
        "scope": {"environments": [], "roles": [], "targets": [], "steps": []},
    }
    row = stored(var["id"])
    assert row.sealed_value is None
    assert row.value is None


def test_sensitive_without_value_needs_a_stored_sensitive_id(api, world):
    plain = put(api, [{"name": "Plain", "value": "x"}]).json()["variables"][0]
    for item in (
        {"name": "Secret", "sensitive": True},
        {"name": "Secret", "value": None, "sensitive": True},
        {"id": plain["id"], "name": "Plain", "value": None, "sensitive": True},
    ):
        response = put(api, [item])
        assert response.status_code == 422, item
        assert response.json()["error"]["details"][0]["field"] == "variables.0.value"
    assert api.get("/projects/Shop/variables").json()["variables"][0]["value"] == "x"


def test_ids_must_belong_to_the_project(api, world):
    other = put(api, [{"name": "A", "value": "1"}], project="Blog").json()["variables"][0]
    mine = put(api, [{"name": "A", "value": "1"}]).json()["variables"][0]
    foreign = put(api, [{"id": other["id"], "name": "A", "value": None, "sensitive": True}])
    assert foreign.status_code == 422
    details = foreign.json()["error"]["details"]
    assert [d["field"] for d in details] == ["variables.0.id"]
    twice = put(
        api,
        [
            {"id": mine["id"], "name": "A", "value": "1"},
            {"id": mine["id"], "name": "B", "value": "2"},
        ],
    )
    assert twice.status_code == 422
    assert twice.json()["error"]["details"][0]["field"] == "variables.1.id"
    assert put(api, [{"id": "var_000000000000", "name": "A"}]).status_code == 422


def test_names_and_scopes(api, world):
    same = put(
        api,
        [
            {"name": "Url", "value": "1", "scope": {"environments": ["Dev"]}},
            {"name": "url", "value": "2", "scope": {"environments": [world["Dev"]]}},
        ],
    )
    assert same.status_code == 422
    assert same.json()["error"]["details"] == [
        {"field": "variables.1.name", "message": "'url' is listed twice with the same scope"}
    ]
    unknown = put(
        api,
        [
            {"name": "A", "scope": {"environments": ["Nowhere"]}},
            {"name": "B", "scope": {"targets": ["ghost"]}},
        ],
    )
    assert unknown.status_code == 422
    assert [d["field"] for d in unknown.json()["error"]["details"]] == [
        "variables.0.scope.environments",
        "variables.1.scope.targets",
    ]
    assert "Nowhere" in unknown.json()["error"]["details"][0]["message"]
    assert api.get("/projects/Shop/variables").json()["variables"] == []


def test_deleted_target_stays_in_scope_and_round_trips(api, world):
    put(api, [{"name": "A", "value": "1", "scope": {"targets": ["web-01"]}}])
    assert api.delete("/targets/web-01").status_code == 200
    fetched = api.get("/projects/Shop/variables").json()["variables"]
    assert fetched[0]["scope"]["targets"] == [world["web-01"]]  # still narrow, not widened
    assert put(api, fetched).status_code == 200
    assert put(api, [{"name": "B", "scope": {"targets": ["web-01"]}}]).status_code == 422


def test_step_scopes_are_names(api, world):
    """Steps are scoped by name (free, like roles): a step renamed later simply stops matching."""
    response = put(
        api,
        [
            {"name": "Port", "value": "1", "scope": {"steps": ["Deploy web", "Deploy web"]}},
            {"name": "Port", "value": "2", "scope": {"steps": ["Migrate"], "roles": ["db"]}},
            {"name": "Port", "value": "3"},
        ],
    )
    assert response.status_code == 200, response.text
    scopes = [v["scope"] for v in response.json()["variables"]]
    assert scopes[0] == {"environments": [], "roles": [], "targets": [], "steps": ["Deploy web"]}
    assert scopes[1]["steps"] == ["Migrate"]
    same = put(
        api,
        [
            {"name": "A", "value": "1", "scope": {"steps": ["x", "y"]}},
            {"name": "A", "value": "2", "scope": {"steps": ["y", "x"]}},
        ],
    )
    assert same.status_code == 422
    assert same.json()["error"]["details"][0]["field"] == "variables.1.name"


BAD_BODIES = [
    {"variables": [{"name": ""}]},
    {"variables": [{"name": "   "}]},
    {"variables": [{"name": "x" * 301}]},
    {"variables": [{"name": "A", "value": 5}]},
    {"variables": [{"name": "A", "sensitive": "yes"}]},
    {"variables": [{"name": "A", "colour": "red"}]},
    {"variables": [{"name": "A", "scope": {"steps": [""]}}]},
    {"variables": [{"name": "A", "scope": {"machines": ["x"]}}]},
    {"variables": [{"name": "A", "scope": {"roles": [""]}}]},
    {"variables": [{"name": "A", "value": "v" * 262_145}]},
    {"variables": [{"name": f"v{i}"} for i in range(1001)]},
    {"variables": {"name": "A"}},
    {},
]


def test_bad_bodies_are_422(api, world):
    for body in BAD_BODIES:
        response = api.put("/projects/Shop/variables", json=body)
        assert response.status_code == 422, (str(body)[:100], response.text)
    assert api.get("/projects/Shop/variables").json()["variables"] == []


def test_errors_and_audit_never_hold_values(api, world):
    canary = "canary-" + secrets.token_hex(16)
    too_long = put(api, [{"name": "A", "value": canary * 10_000, "sensitive": True}])
    assert too_long.status_code == 422
    assert canary not in too_long.text
    no_scope = put(
        api, [{"name": "A", "value": canary, "sensitive": True, "scope": {"targets": ["x"]}}]
    )
    assert no_scope.status_code == 422
    assert canary not in no_scope.text

    existing = put(api, [{"name": "Gone", "value": "1"}]).json()["variables"]
    assert existing
    response = put(
        api,
        [
            {"name": "Secret", "value": canary, "sensitive": True},
            {"name": "Plain", "value": "visible"},
            {"name": "Plain", "value": "other", "scope": {"roles": ["web"]}},
        ],
    )
    assert response.status_code == 200
    event = (
        AuditEvent.select()
        .where(AuditEvent.resource_type == "variables")
        .order_by(AuditEvent.occurred_at.desc())
        .first()
    )
    assert event.action == "update"
    assert event.resource_id == world["Shop"]
    assert event.resource_name == "Shop"
    assert event.details == {
        "count": 3,
        "names": ["Plain", "Secret"],
        "sensitive": ["Secret"],
        "removed": ["Gone"],
    }
    assert canary not in json.dumps(event.details)


def test_a_thousand_variables(api, world):
    variables = [
        {"name": f"Var{i}", "value": str(i), "sensitive": i % 10 == 0} for i in range(1000)
    ]
    response = put(api, variables)
    assert response.status_code == 200, response.text
    got = response.json()["variables"]
    assert len(got) == 1000
    assert got[999]["value"] == "999"
    assert got[990] == {**got[990], "value": None, "has_value": True}
    assert put(api, got).status_code == 200  # the round trip at full size
    assert Variable.select().where(Variable.sealed_value.is_null(False)).count() == 100


def test_permissions(octo, api, world):
    put(api, [{"name": "A", "value": "1"}])
    viewer = api.as_key(make_user_with_role(octo, "vera", "viewer"))
    assert viewer.get("/projects/Shop/variables").status_code == 200
    assert put(viewer, []).status_code == 403
    assert len(api.get("/projects/Shop/variables").json()["variables"]) == 1

    deployer = api.as_key(
        make_user_with_role(octo, "dora", "project-deployer", projects=[world["Shop"]])
    )
    assert deployer.get("/projects/Shop/variables").status_code == 200
    assert put(deployer, [{"name": "B", "value": "2"}]).status_code == 200
    assert deployer.get("/projects/Blog/variables").status_code == 403
    assert put(deployer, [], project="Blog").status_code == 403

    anonymous = api.as_key(None)
    assert anonymous.get("/projects/Shop/variables").status_code == 401
    assert put(anonymous, []).status_code == 401


def test_a_get_answer_is_a_put_body(api, world):
    put(api, [{"name": "S", "value": "x", "sensitive": True}, {"name": "P", "value": "y"}])
    got = api.get("/projects/Shop/variables").json()
    assert api.put("/projects/Shop/variables", json=got).json() == got
    elsewhere = api.put("/projects/Blog/variables", json=got)
    assert elsewhere.status_code == 422
    assert elsewhere.json()["error"]["details"][0]["field"] == "project_id"
    assert api.get("/projects/Blog/variables").json()["variables"] == []
