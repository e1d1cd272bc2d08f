"""Releases on SQLite and PostgreSQL: versions, immutable snapshots, sealed variables,
refreshing the variables, per-environment status, deletion rules, permissions."""

from __future__ import annotations

import json
import secrets

import pytest

from octo_appliance.db import AuditEvent, Deployment, Release
from octo_appliance.engine.releases import next_version, open_release_variables
from octo_appliance.exceptions import VaultError
from octo_appliance.feed.names import version_key
from tests.api.helpers import all_audit_text, make_user

SCRIPT = {"syntax": "bash", "body": "echo #{Url}"}
STEP = {"name": "Deploy", "type": "run-script", "roles": ["web"], "properties": SCRIPT}


@pytest.fixture
def world(api):  # type: ignore[no-untyped-def]
    """Environments (Prod sorts before Dev by sort order), project Shop with a process, a
    sensitive and a plain variable, and library sets Common and Mail included in that order."""
    ids = {}
    for name, order in (("Dev", 1), ("Prod", 2), ("Test", 1)):
        body = {"name": name, "sort_order": order}
        ids[name] = api.post("/environments", json=body).json()["id"]
    for name in ("Common", "Mail"):
        ids[name] = api.post("/library-variable-sets", json={"name": name}).json()["id"]
    project = {"name": "Shop", "library_sets": ["Common", "Mail"]}
    ids["Shop"] = api.post("/projects", json=project).json()["id"]
    assert api.put("/projects/Shop/process", json={"steps": [STEP]}).status_code == 200
    return ids


def set_variables(api, path, variables):  # type: ignore[no-untyped-def]
    response = api.put(f"{path}/variables", json={"variables": variables})
    assert response.status_code == 200, response.text


def create(api, project="Shop", **body):  # type: ignore[no-untyped-def]
    return api.post(f"/projects/{project}/releases", json=body)


def succeed(release_id, project_id, environment_id):  # type: ignore[no-untyped-def]
    """A successful deployment, written directly (the executor's job in real life)."""
    return Deployment.create_new(
        release=release_id,
        project=project_id,
        environment=environment_id,
        task_id="tsk_000000000000",
        state="success",
    )


def test_versions(api, world):
    first = create(api)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == "0.0.1"
    assert create(api).json()["version"] == "0.0.2"
    for version in ("1.2.3-beta.1", "1.0.9", "1.2.3+build.7"):
        assert create(api, version=version).status_code == 201
    assert create(api).json()["version"] == "1.2.4"  # highest by precedence, patch + 1
    duplicate = create(api, version="1.0.9")
    assert duplicate.status_code == 409
    assert "1.0.9" in duplicate.json()["error"]["message"]
    for bad in ("1.0", "v1.0.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0+", "latest", " "):
        response = create(api, version=bad)
        assert response.status_code == 422, bad
    assert create(api, version="x" * 101).status_code == 422
    assert create(api, colour="red").status_code == 422
    assert create(api, project="Nope").status_code == 404


def test_version_helpers():
    assert next_version([]) == "0.0.1"
    assert next_version(["0.0.9", "0.0.10", "0.0.2"]) == "0.0.11"
    assert next_version(["2.0.0-rc.1"]) == "2.0.1"
    assert next_version(["1.0.0", "1.0.1+b", "not-semver"]) == "1.0.2"
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11"]
    ordered += ["1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"]
    assert sorted(ordered, key=version_key) == ordered  # type: ignore[arg-type]
    assert version_key("1.0") is None


def test_snapshot_contents_and_sealed_variables(octo, api, world):
    secret = "release-secret-" + secrets.token_hex(8)
    lib_secret = "lib-secret-" + secrets.token_hex(8)
    set_variables(
        api,
        "/projects/Shop",
        [
            {"name": "Url", "value": "http://dev", "scope": {"environments": ["Dev"]}},
            {"name": "Password", "value": secret, "sensitive": True},
        ],
    )
    set_variables(api, "/library-variable-sets/Common", [{"name": "Region", "value": "eu"}])
    set_variables(
        api,
        "/library-variable-sets/Mail",
        [{"name": "SmtpPassword", "value": lib_secret, "sensitive": True}],
    )
    response = create(api, version="1.0.0", notes="first")
    assert response.status_code == 201, response.text
    release = response.json()
    assert secret not in response.text and lib_secret not in response.text
    assert release["notes"] == "first"
    assert release["created_by"] == "admin"
    assert release["process_version"] == 1
    assert [step["name"] for step in release["steps"]] == ["Deploy"]
    # the default lifecycle: one phase per environment, by sort order then name
    assert [phase["name"] for phase in release["lifecycle"]] == ["Dev", "Test", "Prod"]
    assert release["lifecycle"][0] == {
        "name": "Dev",
        "environments": [world["Dev"]],
        "minimum_environments": 0,
        "automatic": False,
    }
    variables = release["variables"]
    assert [(v["name"], v["source"], v["value"]) for v in variables] == [
        ("Url", "project", "http://dev"),
        ("Password", "project", None),
        ("Region", "library:Common", "eu"),
        ("SmtpPassword", "library:Mail", None),
    ]
    assert variables[0]["scope"] == {
        "environments": [world["Dev"]],
        "roles": [],
        "targets": [],
        "steps": [],
    }

    row = Release.get_by_id(release["id"])
    assert secret not in json.dumps(row.variables_snapshot)
    assert secret not in row.sealed_variables
    vault = octo.appliance.vault
    assert json.loads(vault.open(row.sealed_variables, row.aad("sealed_variables"))) == {
        "1": secret,
        "3": lib_secret,
    }
    with pytest.raises(VaultError):  # bound to its release
        vault.open(row.sealed_variables, Release(id="rel_000000000000").aad("sealed_variables"))
    opened = open_release_variables(vault, row)
    assert [v["value"] for v in opened] == ["http://dev", secret, "eu", lib_secret]
    assert secret not in all_audit_text()
    assert secret not in api.get(f"/releases/{release['id']}").text


def test_later_edits_do_not_change_a_release(api, world):
    set_variables(api, "/projects/Shop", [{"name": "Url", "value": "v1"}])
    api.post(
        "/lifecycles",
        json={"name": "Main", "phases": [{"name": "Only", "environments": ["Dev"]}]},
    )
    api.put("/projects/Shop", json={"lifecycle": "Main"})
    before = create(api, version="1.0.0").json()

    changed_step = {**STEP, "name": "Renamed", "properties": {**SCRIPT, "body": "echo v2"}}
    assert api.put("/projects/Shop/process", json={"steps": [changed_step]}).status_code == 200
    set_variables(api, "/projects/Shop", [{"name": "Url", "value": "v2"}])
    set_variables(api, "/library-variable-sets/Common", [{"name": "New", "value": "x"}])
    main = {"phases": [{"name": "Both", "environments": ["Prod", "Dev"]}]}
    assert api.put("/lifecycles/Main", json=main).status_code == 200

    after = api.get(f"/releases/{before['id']}").json()
    assert after == before
    assert after["steps"][0]["properties"]["body"] == "echo #{Url}"
    assert [v["value"] for v in after["variables"]] == ["v1"]
    assert [p["name"] for p in after["lifecycle"]] == ["Only"]
    # a new release takes the new state
    newer = create(api).json()
    assert newer["version"] == "1.0.1"
    assert newer["steps"][0]["name"] == "Renamed"
    assert newer["process_version"] == 2
    assert [p["name"] for p in newer["lifecycle"]] == ["Both"]


def test_refresh_variables_changes_only_the_variables(octo, api, world):
    set_variables(api, "/projects/Shop", [{"name": "Url", "value": "v1"}])
    release = create(api, version="1.0.0").json()
    api.put("/projects/Shop/process", json={"steps": [{**STEP, "name": "Other"}]})
    secret = "new-secret-" + secrets.token_hex(8)
    set_variables(
        api,
        "/projects/Shop",
        [{"name": "Url", "value": "v2"}, {"name": "Token", "value": secret, "sensitive": True}],
    )
    refreshed = api.post(f"/releases/{release['id']}/snapshot-variables")
    assert refreshed.status_code == 200, refreshed.text
    got = refreshed.json()
    assert secret not in refreshed.text
    assert [(v["name"], v["value"]) for v in got["variables"]] == [("Url", "v2"), ("Token", None)]
    assert got["steps"] == release["steps"]
    assert got["process_version"] == release["process_version"]
    assert got["lifecycle"] == release["lifecycle"]
    row = Release.get_by_id(release["id"])
    assert open_release_variables(octo.appliance.vault, row)[1]["value"] == secret
    event = AuditEvent.get(AuditEvent.action == "refresh-variables")
    assert event.resource_id == release["id"]
    # refreshing to no sensitive value clears the sealed copy
    set_variables(api, "/projects/Shop", [])
    api.put("/projects/Shop", json={"library_sets": []})
    assert api.post(f"/releases/{release['id']}/snapshot-variables").json()["variables"] == []
    assert Release.get_by_id(release["id"]).sealed_variables is None
    assert api.post("/releases/rel_000000000000/snapshot-variables").status_code == 404


def test_list_get_and_status_per_environment(api, world):
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        create(api, version=version)
    page = api.get("/projects/Shop/releases").json()
    assert page["total"] == 3
    assert [r["version"] for r in page["items"]] == ["1.2.0", "1.1.0", "1.0.0"]
    assert set(page["items"][0]) == {
        "id",
        "project_id",
        "version",
        "notes",
        "process_version",
        "created_at",
        "created_by",
    }
    assert page["items"][0]["project_id"] == world["Shop"]
    assert (
        api.get("/projects/Shop/releases", params={"take": 1, "skip": 1}).json()["items"][0][
            "version"
        ]
        == "1.1.0"
    )
    assert api.get("/projects/Shop/releases", params={"name": "1.1"}).json()["total"] == 1

    by_version = api.get("/projects/Shop/releases/1.1.0").json()
    assert api.get(f"/releases/{by_version['id']}").json() == by_version
    assert api.get(f"/projects/Shop/releases/{by_version['id']}").json() == by_version
    assert api.get("/projects/Shop/releases/9.9.9").status_code == 404
    assert api.get("/releases/rel_000000000000").status_code == 404

    status = {row["environment_name"]: row for row in by_version["environments"]}
    assert [row["environment_name"] for row in by_version["environments"]] == [
        "Dev",
        "Test",
        "Prod",
    ]
    assert status["Dev"]["can_deploy"] and status["Dev"]["deployment"] is None
    assert not status["Test"]["can_deploy"]
    assert status["Test"]["reason"] == "phase 'Dev' is not complete"
    deployment = succeed(by_version["id"], world["Shop"], world["Dev"])
    status = {
        row["environment_name"]: row
        for row in api.get(f"/releases/{by_version['id']}").json()["environments"]
    }
    assert status["Dev"]["deployment"]["id"] == deployment.id
    assert status["Dev"]["deployment"]["state"] == "success"
    assert status["Test"]["can_deploy"] and not status["Prod"]["can_deploy"]


def test_delete_rules(api, world):
    old = create(api, version="1.0.0").json()
    new = create(api, version="1.1.0").json()
    succeed(old["id"], world["Shop"], world["Dev"])
    refused = api.delete(f"/releases/{old['id']}")
    assert refused.status_code == 409
    assert "live environment: Dev" in refused.json()["error"]["message"]
    # once another release is the current one there, the old one may go
    succeed(new["id"], world["Shop"], world["Dev"])
    assert api.delete(f"/releases/{new['id']}").status_code == 409
    deleted = api.delete(f"/releases/{old['id']}")
    assert deleted.json() == {"id": old["id"], "deleted": True}
    assert not Deployment.select().where(Deployment.release == old["id"]).exists()
    # a release with a deployment still queued cannot go either
    queued = create(api, version="2.0.0").json()
    Deployment.create_new(
        release=queued["id"],
        project=world["Shop"],
        environment=world["Prod"],
        task_id="tsk_000000000001",
        state="queued",
    )
    assert api.delete(f"/releases/{queued['id']}").status_code == 409
    assert api.delete("/releases/rel_000000000000").status_code == 404
    event = AuditEvent.get(AuditEvent.resource_id == old["id"], AuditEvent.action == "delete")
    assert event.resource_name == "Shop 1.0.0"


def test_permissions(octo, api, world):
    release = create(api, version="1.0.0").json()
    api.post("/projects", json={"name": "Blog"})
    viewer = api.as_key(make_user(octo, "vera", "viewer"))
    assert viewer.get("/projects/Shop/releases").status_code == 200
    assert viewer.get(f"/releases/{release['id']}").status_code == 200
    assert create(viewer).status_code == 403
    assert viewer.post(f"/releases/{release['id']}/snapshot-variables").status_code == 403
    assert viewer.delete(f"/releases/{release['id']}").status_code == 403

    scoped = api.as_key(make_user(octo, "sam", "project-deployer", projects=[world["Shop"]]))
    assert create(scoped).status_code == 201
    assert create(scoped, project="Blog").status_code == 403
    assert scoped.get("/projects/Blog/releases").status_code == 403
    blog = create(api, project="Blog").json()
    assert scoped.get(f"/releases/{blog['id']}").status_code == 403
    assert scoped.delete(f"/releases/{blog['id']}").status_code == 403
    assert scoped.delete(f"/releases/{release['id']}").status_code == 200
    assert api.as_key(None).get(f"/releases/{blog['id']}").status_code == 401


def test_deleting_the_project_or_environment_takes_the_history(api, world):
    release = create(api, version="1.0.0").json()
    succeed(release["id"], world["Shop"], world["Dev"])
    succeed(release["id"], world["Shop"], world["Test"])
    assert api.delete("/environments/Test").status_code == 200
    assert Deployment.select().count() == 1
    assert [p["name"] for p in api.get(f"/releases/{release['id']}").json()["lifecycle"]] == [
        "Dev",
        "Prod",
    ]
    assert api.delete("/projects/Shop").status_code == 200
    assert not Release.select().exists()
    assert not Deployment.select().exists()
