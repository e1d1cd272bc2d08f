from __future__ import annotations


def test_create_list_get_update_delete(api):
    created = api.post("/environments", json={"name": "Dev", "description": "first"})
    assert created.status_code == 201, created.text
    env = created.json()
    assert env["id"].startswith("env_")
    assert env["name"] == "Dev"

    api.post("/environments", json={"name": "Prod", "sort_order": 2})
    listed = api.get("/environments").json()
    assert listed["total"] == 2
    assert [e["name"] for e in listed["items"]] == ["Dev", "Prod"]

    by_name = api.get("/environments/Dev").json()
    assert by_name["id"] == env["id"]
    assert api.get(f"/environments/{env['id']}").json()["name"] == "Dev"

    updated = api.put(f"/environments/{env['id']}", json={"description": "changed"})
    assert updated.status_code == 200
    assert updated.json()["description"] == "changed"
    assert updated.json()["name"] == "Dev"

    deleted = api.delete("/environments/Dev")
    assert deleted.status_code == 200
    assert api.get("/environments/Dev").status_code == 404


def test_duplicate_name_is_conflict(api):
    assert api.post("/environments", json={"name": "Dev"}).status_code == 201
    response = api.post("/environments", json={"name": "Dev"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_pagination_and_name_filter(api):
    for i in range(7):
        api.post("/environments", json={"name": f"env-{i}", "sort_order": i})
    api.post("/environments", json={"name": "other"})
    page = api.get("/environments", params={"skip": 2, "take": 3, "name": "ENV-"}).json()
    assert page["total"] == 7
    assert [e["name"] for e in page["items"]] == ["env-2", "env-3", "env-4"]


def test_bad_input(api):
    unknown = api.post("/environments", json={"name": "Dev", "colour": "red"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"] == "colour"
    wrong_type = api.post("/environments", json={"name": 5})
    assert wrong_type.status_code == 422
    malformed = api.post(
        "/environments", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "bad_request"
    assert api.get("/environments", params={"take": "lots"}).status_code == 400
    assert api.get("/environments/env_doesnotexist").status_code == 404


def test_requires_authentication(api):
    anonymous = api.as_key(None)
    response = anonymous.get("/environments")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert api.as_key("OCTO-wrong").get("/environments").status_code == 401
