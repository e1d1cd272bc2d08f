"""Releases pin package versions (SQLite and PostgreSQL): the latest by default, or the
version asked for, per package or per step; clear 422s; the feed keeps pinned versions."""

from __future__ import annotations

import pytest

from tests.packages_support import upload, zip_bytes


def install(name: str, package: str) -> dict[str, object]:
    return {
        "name": name,
        "type": "deploy-package",
        "roles": ["web"],
        "properties": {"package": package},
    }


@pytest.fixture
def world(api):  # type: ignore[no-untyped-def]
    api.post("/environments", json={"name": "Dev"})
    api.post("/projects", json={"name": "Shop"})
    steps = [install("Web", "Acme.Web"), install("Web again", "Acme.Web"), install("Db", "Acme.Db")]
    response = api.put("/projects/Shop/process", json={"steps": steps})
    assert response.status_code == 200, response.text
    shas = {}
    for name in (
        "Acme.Web.1.0.0.zip",
        "Acme.Web.1.10.0.zip",
        "Acme.Web.1.2.0.zip",
        "Acme.Db.2.0.0.zip",
    ):
        pushed = upload(api, name, zip_bytes({"f.txt": name.encode()}))
        assert pushed.status_code == 201, pushed.text
        shas[name] = pushed.json()["sha256"]
    return shas


def pins(release):  # type: ignore[no-untyped-def]
    return {(p["step"], p["package_id"]): p["version"] for p in release["packages"]}


def test_latest_by_semantic_version(api, world):
    created = api.post("/projects/Shop/releases", json={})
    assert created.status_code == 201, created.text
    assert pins(created.json()) == {
        ("Web", "Acme.Web"): "1.10.0",
        ("Web again", "Acme.Web"): "1.10.0",
        ("Db", "Acme.Db"): "2.0.0",
    }
    web = next(p for p in created.json()["packages"] if p["step"] == "Web")
    assert web["sha256"] == world["Acme.Web.1.10.0.zip"]
    again = api.get(f"/releases/{created.json()['id']}")
    assert again.json()["packages"] == created.json()["packages"]


def test_chosen_versions_per_package_and_per_step(api, world):
    body = {
        "packages": [
            {"package": "Acme.Web", "version": "1.0.0"},
            {"package": "Acme.Web", "version": "1.2.0", "step": "Web again"},
        ]
    }
    created = api.post("/projects/Shop/releases", json=body)
    assert created.status_code == 201, created.text
    assert pins(created.json()) == {
        ("Web", "Acme.Web"): "1.0.0",
        ("Web again", "Acme.Web"): "1.2.0",
        ("Db", "Acme.Db"): "2.0.0",
    }


@pytest.mark.parametrize(
    ("packages", "fragment"),
    [
        ([{"package": "Acme.Web", "version": "9.9.9"}], "no version 9.9.9"),
        ([{"package": "Other", "version": "1.0.0"}], "no step of the process deploys"),
        ([{"package": "Acme.Web", "version": "1.0.0", "step": "Nope"}], "deploys no package"),
    ],
)
def test_bad_choices_are_422_and_create_nothing(api, world, packages, fragment):
    response = api.post("/projects/Shop/releases", json={"packages": packages})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert fragment in error["message"]
    assert error["details"][0]["field"] == "packages"
    assert api.get("/projects/Shop/releases").json()["items"] == []


def test_a_package_without_versions_is_refused_with_a_hint(api, world):
    steps = [install("Web", "Acme.Web"), install("Api", "Acme.Api")]
    assert api.put("/projects/Shop/process", json={"steps": steps}).status_code == 200
    response = api.post("/projects/Shop/releases", json={})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "'Acme.Api'" in error["message"] and "no version in the feed" in error["message"]
    assert "package push" in error["hint"]
    assert api.get("/projects/Shop/releases").json()["items"] == []


def test_the_feed_keeps_a_pinned_version(api, world):
    created = api.post("/projects/Shop/releases", json={})
    assert created.status_code == 201
    refused = api.delete("/packages/Acme.Db/2.0.0")
    assert refused.status_code == 409, refused.text
    assert "Shop" in refused.json()["error"]["message"]
    assert api.delete("/packages/Acme.Web/1.0.0").status_code == 204  # not pinned
    assert api.delete("/packages/Acme.Db/2.0.0", params={"force": "true"}).status_code == 204


def test_replacing_pinned_content_needs_force(octo, api, world):
    """A release pins a version's content (SHA-256): replacing it with other bytes would
    leave the release undeployable, so that takes force; the same bytes replace freely."""
    from octo_appliance.db import AuditEvent
    from tests.packages_support import stored_files

    created = api.post("/projects/Shop/releases", json={})
    assert created.status_code == 201
    original = zip_bytes({"f.txt": b"Acme.Db.2.0.0.zip"})
    files = stored_files(octo.appliance.data_dir)

    refused = upload(api, "Acme.Db.2.0.0.zip", zip_bytes({"f.txt": b"other"}), replace="true")

    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert "used by releases: Shop" in error["message"] and "force=true" in error["hint"]
    assert api.get("/packages/Acme.Db/2.0.0/download").content == original
    assert stored_files(octo.appliance.data_dir) == files
    replaced = (AuditEvent.action == "update") & (AuditEvent.resource_type == "package")
    assert not AuditEvent.select().where(replaced).exists()

    same = upload(api, "Acme.Db.2.0.0.zip", original, replace="true")
    assert same.status_code == 200, same.text
    assert same.json()["sha256"] == world["Acme.Db.2.0.0.zip"]

    other = zip_bytes({"f.txt": b"other"})
    forced = upload(api, "Acme.Db.2.0.0.zip", other, replace="true", force="true")
    assert forced.status_code == 200, forced.text
    assert api.get("/packages/Acme.Db/2.0.0/download").content == other
    details = [event.details for event in AuditEvent.select().where(replaced)]  # ids: random
    assert len(details) == 2  # the identical replace and the forced one
    [forced_details] = [d for d in details if d.get("forced")]
    assert forced_details["releases"] == [f"Shop {created.json()['version']}"]
