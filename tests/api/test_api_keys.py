"""``/api-keys``: self-service keys, shown once, stored as hashes, revoked at once."""

from __future__ import annotations

from octo_appliance.db import ApiKey
from octo_appliance.security.passwords import token_hash
from tests.api.helpers import all_audit_text, client_as, events, make_user, user_id


def test_create_use_list_revoke_own_key(octo, api):
    viewer = client_as(octo, make_user(octo, "vic", "viewer"))
    created = viewer.post("/api-keys", json={"name": "laptop"})
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("OCTO-")
    assert body["prefix"] == key[: len(body["prefix"])]
    assert body["name"] == "laptop"
    assert body["user"] == {"id": user_id("vic"), "username": "vic"}

    stored = ApiKey.get_by_id(body["id"])
    assert stored.key_hash == token_hash(key)  # only the hash is kept
    assert key not in (stored.key_hash, stored.prefix)

    new_client = client_as(octo, key)
    assert new_client.get("/users/me").json()["username"] == "vic"

    listed = viewer.get("/api-keys")
    assert listed.status_code == 200
    items = {k["name"]: k for k in listed.json()["items"]}
    assert set(items) == {"laptop", "test"}
    assert items["laptop"]["last_used"] is not None
    assert key not in listed.text  # never shown again
    assert all("key" not in item for item in listed.json()["items"])
    assert viewer.get("/api-keys", params={"name": "lap"}).json()["total"] == 1

    assert new_client.get("/environments").status_code == 200  # cached now
    revoked = viewer.delete(f"/api-keys/{body['id']}")
    assert revoked.json() == {"id": body["id"], "deleted": True}
    assert new_client.get("/environments").status_code == 401
    assert viewer.get("/environments").status_code == 200  # the other key still works


def test_a_key_can_revoke_itself(octo):
    key = make_user(octo, "vic", "viewer")
    vic = client_as(octo, key)
    own_id = ApiKey.get(ApiKey.key_hash == token_hash(key)).id
    assert vic.delete(f"/api-keys/{own_id}").status_code == 200
    assert vic.get("/users/me").status_code == 401


def test_users_cannot_touch_other_users_keys(octo, api):
    viewer = client_as(octo, make_user(octo, "vic", "viewer"))
    admin_key = api.post("/api-keys", json={"name": "admin ci"}).json()

    assert viewer.get("/api-keys", params={"user": "admin"}).status_code == 403
    assert viewer.get("/api-keys", params={"user": user_id("admin")}).status_code == 403
    assert viewer.get("/api-keys", params={"user": "vic"}).status_code == 200  # self is fine
    assert viewer.post("/api-keys", json={"name": "x", "user": "admin"}).status_code == 403
    denied = viewer.delete(f"/api-keys/{admin_key['id']}")
    assert denied.status_code == 404  # other users' key ids are not confirmed
    assert ApiKey.get_or_none(ApiKey.id == admin_key["id"]) is not None
    assert client_as(octo, admin_key["key"]).get("/users/me").status_code == 200
    # no key of the admin leaked into the viewer's list
    assert {k["user"]["username"] for k in viewer.get("/api-keys").json()["items"]} == {"vic"}


def test_admin_manages_anyones_keys(octo, api):
    vic_key = make_user(octo, "vic", "viewer")
    vic = client_as(octo, vic_key)
    assert vic.get("/environments").status_code == 200

    made = api.post("/api-keys", json={"name": "for vic", "user": "vic"})
    assert made.status_code == 201
    assert made.json()["user"]["username"] == "vic"
    assert client_as(octo, made.json()["key"]).get("/users/me").json()["username"] == "vic"

    listed = api.get("/api-keys", params={"user": "vic"}).json()
    assert {k["name"] for k in listed["items"]} == {"test", "for vic"}
    assert api.get("/api-keys", params={"user": user_id("vic")}).json()["total"] == 2
    assert {k["name"] for k in api.get("/api-keys").json()["items"]} == {"test admin"}

    vic_key_id = ApiKey.get(ApiKey.key_hash == token_hash(vic_key)).id
    assert api.delete(f"/api-keys/{vic_key_id}").status_code == 200
    assert vic.get("/environments").status_code == 401


def test_bad_requests(octo, api):
    make_user(octo, "sleepy", "viewer", active=False)
    assert api.post("/api-keys", json={}).status_code == 422  # a name is required
    assert api.post("/api-keys", json={"name": " "}).status_code == 422
    assert api.post("/api-keys", json={"name": "x", "key": "mine"}).status_code == 422
    assert api.post("/api-keys", json={"name": "x", "user": "ghost"}).status_code == 404
    assert api.get("/api-keys", params={"user": "ghost"}).status_code == 404
    inactive = api.post("/api-keys", json={"name": "x", "user": "sleepy"})
    assert inactive.status_code == 409
    assert inactive.json()["error"]["hint"]
    named = api.post("/api-keys", json={"name": "by-name"}).json()
    assert api.delete("/api-keys/by-name").status_code == 404  # ids only
    assert api.delete(f"/api-keys/{named['id']}").status_code == 200
    assert api.delete(f"/api-keys/{named['id']}").status_code == 404
    assert client_as(octo, None).post("/api-keys", json={"name": "x"}).status_code == 401


def test_audit_records_keys_without_the_key(octo, api):
    created = api.post("/api-keys", json={"name": "ci"}).json()
    api.delete(f"/api-keys/{created['id']}")
    create_event = events(resource_type="api-key", action="create")[0]
    delete_event = events(resource_type="api-key", action="delete")[0]
    for event in (create_event, delete_event):
        assert event.user_id == user_id("admin")
        assert event.resource_id == created["id"]
        assert event.resource_name == "ci"
    text = all_audit_text()
    assert created["key"] not in text
    assert created["key"][5:] not in text
    assert created["prefix"] not in text
    assert token_hash(created["key"]) not in text
