"""``/api/v1/targets`` on SQLite and PostgreSQL: CRUD, filters, validation, permissions."""

from __future__ import annotations

import types

import pytest

from octo_appliance.db import AuditEvent, TargetEnvironment, TargetRole
from octo_appliance.hookspecs import hookimpl
from octo_appliance.transports.base import Transport
from tests.api.helpers import make_user as make_user_with_role
from tests.api.helpers import record_statements

THUMB = "AB" * 32


@pytest.fixture
def envs(api):  # type: ignore[no-untyped-def]
    """Dev and Prod, by name -> id."""
    made = {}
    for order, name in enumerate(["Dev", "Prod"]):
        response = api.post("/environments", json={"name": name, "sort_order": order})
        assert response.status_code == 201, response.text
        made[name] = response.json()["id"]
    return made


def make_target(api, name, environments=("Dev",), roles=("web",), **extra):  # type: ignore[no-untyped-def]
    body = {"name": name, "environments": list(environments), "roles": list(roles), **extra}
    response = api.post("/targets", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_get_update_delete(api, envs):
    created = api.post(
        "/targets",
        json={
            "name": "web-01",
            "environments": ["Dev", envs["Prod"]],
            "roles": ["web", "api", "web"],
            "communication_style": "listening",
            "uri": "https://web-01:10933",
            "thumbprint": THUMB,
        },
    )
    assert created.status_code == 201, created.text
    target = created.json()
    assert target["id"].startswith("tgt_")
    assert target["environments"] == [
        {"id": envs["Dev"], "name": "Dev"},
        {"id": envs["Prod"], "name": "Prod"},
    ]
    assert target["roles"] == ["api", "web"]
    assert target["thumbprint"] == THUMB.lower()
    assert target["communication_style"] == "listening"
    assert target["disabled"] is False
    assert target["health_status"] == "Unknown"
    assert target["agent_version"] == ""
    assert target["last_seen"] is None
    assert target["created_at"].endswith("Z")

    assert api.get("/targets/web-01").json() == target
    assert api.get(f"/targets/{target['id']}").json() == target

    updated = api.put(
        "/targets/web-01",
        json={"name": "web-02", "environments": ["Prod"], "roles": ["db"], "disabled": True},
    )
    assert updated.status_code == 200, updated.text
    after = updated.json()
    assert after["name"] == "web-02"
    assert after["environments"] == [{"id": envs["Prod"], "name": "Prod"}]
    assert after["roles"] == ["db"]
    assert after["disabled"] is True
    assert after["uri"] == "https://web-01:10933"  # left out: kept
    assert after["thumbprint"] == THUMB.lower()

    cleared = api.put(f"/targets/{target['id']}", json={"thumbprint": "", "uri": ""})
    assert cleared.json()["thumbprint"] == ""
    assert cleared.json()["uri"] == ""

    deleted = api.delete("/targets/web-02")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": target["id"], "deleted": True}
    assert api.get("/targets/web-02").status_code == 404
    assert not TargetEnvironment.select().where(TargetEnvironment.target == target["id"]).exists()
    assert not TargetRole.select().where(TargetRole.target == target["id"]).exists()


def test_changes_are_audited(api, envs):
    target = make_target(api, "web-01", uri="https://web-01:10933")
    api.put("/targets/web-01", json={"roles": ["db"]})
    api.delete("/targets/web-01")
    events = list(
        AuditEvent.select()
        .where(AuditEvent.resource_id == target["id"])
        .order_by(AuditEvent.occurred_at)
    )
    assert [e.action for e in events] == ["create", "update", "delete"]
    assert all(e.resource_type == "target" and e.username == "admin" for e in events)
    assert events[0].details["environments"] == ["Dev"]
    assert events[1].details == {"roles": ["db"]}


def test_duplicate_names_conflict(api, envs):
    make_target(api, "web-01")
    make_target(api, "web-02")
    assert (
        api.post(
            "/targets", json={"name": "web-01", "environments": ["Dev"], "roles": ["web"]}
        ).status_code
        == 409
    )
    renamed = api.put("/targets/web-02", json={"name": "web-01"})
    assert renamed.status_code == 409
    assert renamed.json()["error"]["code"] == "conflict"
    assert api.put("/targets/web-02", json={"name": "web-02"}).status_code == 200


INVALID_CREATES = [
    ({"environments": []}, "environments"),
    ({"roles": []}, "roles"),
    ({"roles": ["a,b"]}, "roles"),
    ({"roles": [" "]}, "roles"),
    ({"environments": ["Nowhere"]}, "environments"),
    ({"communication_style": "carrier-pigeon"}, "communication_style"),
    ({"thumbprint": "abc"}, "thumbprint"),
    ({"thumbprint": "g" * 64}, "thumbprint"),
    ({"uri": "not a uri"}, "uri"),
    ({"disabled": "maybe"}, "disabled"),
    ({"colour": "red"}, "colour"),
    ({"name": ""}, "name"),
]


def test_invalid_create_is_422_naming_the_field(api, envs):
    for change, field in INVALID_CREATES:
        body = {"name": "web-01", "environments": ["Dev"], "roles": ["web"], **change}
        response = api.post("/targets", json=body)
        assert response.status_code == 422, (change, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_failed"
        assert any(d["field"].split(".")[0] == field for d in error["details"]), (change, error)
    assert api.get("/targets").json()["total"] == 0


def test_required_fields_and_bad_update(api, envs):
    assert api.post("/targets", json={"name": "web-01", "roles": ["web"]}).status_code == 422
    assert api.post("/targets", json={"name": "web-01", "environments": ["Dev"]}).status_code == 422
    make_target(api, "web-01")
    assert api.put("/targets/web-01", json={"environments": ["Nowhere"]}).status_code == 422
    assert api.put("/targets/web-01", json={"communication_style": "morse"}).status_code == 422
    assert api.put("/targets/web-01", json={"roles": []}).status_code == 422
    assert api.get("/targets/web-01").json()["roles"] == ["web"]
    assert api.put("/targets/nope", json={"disabled": True}).status_code == 404
    assert api.delete("/targets/nope").status_code == 404
    assert api.get("/targets/tgt_000000000000").status_code == 404


def test_list_pagination_and_filters(api, envs):
    for i in range(6):
        make_target(api, f"web-{i}", environments=["Dev"], roles=["web"])
    make_target(api, "db-0", environments=["Prod"], roles=["db"])
    make_target(api, "both", environments=["Dev", "Prod"], roles=["db", "web"])

    everything = api.get("/targets").json()
    assert everything["total"] == 8
    assert [t["name"] for t in everything["items"]][:2] == ["both", "db-0"]

    page = api.get("/targets", params={"skip": 1, "take": 2, "name": "WEB-"}).json()
    assert page["total"] == 6
    assert [t["name"] for t in page["items"]] == ["web-1", "web-2"]

    in_prod = api.get("/targets", params={"environment": "Prod"}).json()
    assert {t["name"] for t in in_prod["items"]} == {"db-0", "both"}
    by_id = api.get("/targets", params={"environment": envs["Prod"]}).json()
    assert by_id == in_prod

    db_role = api.get("/targets", params={"role": "db"}).json()
    assert {t["name"] for t in db_role["items"]} == {"db-0", "both"}
    both = api.get("/targets", params={"role": "web", "environment": "Prod"}).json()
    assert [t["name"] for t in both["items"]] == ["both"]
    assert both["items"][0]["roles"] == ["db", "web"]

    unknown = api.get("/targets", params={"environment": "Nowhere"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["details"][0]["field"] == "environment"
    assert api.get("/targets", params={"role": "nobody"}).json() == {"items": [], "total": 0}
    assert api.get("/targets", params={"take": 0}).status_code == 400


def test_environment_with_targets_cannot_be_deleted(api, envs):
    make_target(api, "web-01")
    assert api.delete("/environments/Dev").status_code == 409
    api.delete("/targets/web-01")
    assert api.delete("/environments/Dev").status_code == 200


def test_transport_plugin_adds_a_communication_style(octo_appliance_factory, database_url):
    class Pigeon(Transport):
        name = "carrier-pigeon"
        summary = "Very slow"

    @hookimpl
    def register_transports(registry):  # type: ignore[no-untyped-def]
        registry.add(Pigeon)

    plugin = types.ModuleType("pigeon_plugin")
    plugin.register_transports = register_transports  # type: ignore[attr-defined]
    plugin.OCTO_PLUGIN_API = 2  # type: ignore[attr-defined]
    octo = octo_appliance_factory(extra_plugins=(plugin,), database=database_url)
    api = octo.api
    api.post("/environments", json={"name": "Dev"})
    target = make_target(api, "coop", communication_style="carrier-pigeon")
    assert target["communication_style"] == "carrier-pigeon"


def test_viewer_reads_but_cannot_write(octo, api, envs):
    make_target(api, "web-01")
    viewer = api.as_key(make_user_with_role(octo, "vera", "viewer"))
    assert viewer.get("/targets").json()["total"] == 1
    assert viewer.get("/targets/web-01").status_code == 200
    body = {"name": "web-02", "environments": ["Dev"], "roles": ["web"]}
    forbidden = viewer.post("/targets", json=body)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    assert viewer.put("/targets/web-01", json={"disabled": True}).status_code == 403
    assert viewer.delete("/targets/web-01").status_code == 403
    assert api.get("/targets/web-01").json()["disabled"] is False


def test_environment_scoped_grants(octo, api, envs):
    make_target(api, "dev-only", environments=["Dev"])
    make_target(api, "prod-only", environments=["Prod"])
    make_target(api, "both", environments=["Dev", "Prod"])

    dev_viewer = api.as_key(make_user_with_role(octo, "dave", "viewer", environments=[envs["Dev"]]))
    listed = dev_viewer.get("/targets").json()
    assert {t["name"] for t in listed["items"]} == {"dev-only", "both"}
    assert listed["total"] == 2
    assert dev_viewer.get("/targets", params={"environment": "Prod"}).json()["total"] == 1
    assert dev_viewer.get("/targets/both").status_code == 200
    assert dev_viewer.get("/targets/prod-only").status_code == 403

    dev_admin = api.as_key(
        make_user_with_role(octo, "dina", "administrator", environments=[envs["Dev"]])
    )
    assert dev_admin.put("/targets/dev-only", json={"roles": ["api"]}).status_code == 200
    # edit needs every environment of the target, before and after the change
    assert dev_admin.put("/targets/both", json={"roles": ["api"]}).status_code == 403
    assert dev_admin.delete("/targets/both").status_code == 403
    assert dev_admin.put("/targets/dev-only", json={"environments": ["Prod"]}).status_code == 403
    assert dev_admin.put("/targets/prod-only", json={"environments": ["Dev"]}).status_code == 403
    new = {"name": "new", "environments": ["Dev"], "roles": ["web"]}
    assert dev_admin.post("/targets", json=new).status_code == 201
    sneaky = {"name": "sneaky", "environments": ["Dev", "Prod"], "roles": ["web"]}
    assert dev_admin.post("/targets", json=sneaky).status_code == 403
    assert dev_admin.delete("/targets/dev-only").status_code == 200
    assert api.get("/targets/both").json()["roles"] == ["web"]
    assert api.get("/targets/sneaky").status_code == 404


def test_requires_authentication(api, envs):
    anonymous = api.as_key(None)
    assert anonymous.get("/targets").status_code == 401
    assert anonymous.get("/targets/x").status_code == 401
    body = {"name": "web-02", "environments": ["Dev"], "roles": ["web"]}
    assert anonymous.post("/targets", json=body).status_code == 401
    assert anonymous.put("/targets/x", json={"disabled": True}).status_code == 401
    assert anonymous.delete("/targets/x").status_code == 401


def test_list_queries_do_not_grow_with_the_page(octo, api, envs, monkeypatch):
    for i in range(30):
        make_target(api, f"web-{i:02d}", environments=["Dev", "Prod"], roles=["web", "db"])
    api.get("/targets")  # warm the principal cache, so only the list's own queries remain
    statements = record_statements(octo, monkeypatch)
    page = api.get("/targets", params={"take": 25}).json()
    assert page["total"] == 30
    assert all(len(t["environments"]) == 2 and t["roles"] == ["db", "web"] for t in page["items"])
    assert len(statements) == 4, statements  # count, page, environments, roles
