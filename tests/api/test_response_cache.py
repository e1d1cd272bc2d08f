"""Cached answers of hot reads (SQLite and PostgreSQL): fresh after every API write, never
shared between callers, never outliving the caller's access."""

from __future__ import annotations

import time

import pytest

from octo_appliance.api.response_cache import ResponseCache
from tests.api.helpers import make_user


def names(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def test_a_write_is_seen_by_the_next_read(api):
    assert names(api.get("/projects")) == []
    assert names(api.get("/projects")) == []  # now served from the cache
    assert api.post("/projects", json={"name": "Shop"}).status_code == 201
    assert names(api.get("/projects")) == ["Shop"]
    project = api.get("/projects/Shop").json()
    assert project["description"] == ""
    assert api.put("/projects/Shop", json={"description": "new"}).status_code == 200
    assert api.get("/projects/Shop").json()["description"] == "new"
    assert api.delete("/projects/Shop").status_code == 200
    assert api.get("/projects/Shop").status_code == 404
    assert names(api.get("/projects")) == []


def test_answers_are_per_caller_and_per_query(api, octo):
    for name in ("Shop", "Blog"):
        api.post("/projects", json={"name": name})
    shop = api.get("/projects/Shop").json()["id"]
    viewer = api.as_key(make_user(octo, "viewer", "viewer", projects=[shop]))
    assert sorted(names(api.get("/projects"))) == ["Blog", "Shop"]
    assert names(viewer.get("/projects")) == ["Shop"]
    assert sorted(names(api.get("/projects"))) == ["Blog", "Shop"]
    assert names(api.get("/projects", params={"name": "Bl"})) == ["Blog"]
    assert names(viewer.get("/projects")) == ["Shop"]
    assert viewer.get("/projects/Blog").status_code in (403, 404)


def test_a_revoked_key_is_refused_although_its_answer_was_cached(api, octo):
    api.post("/environments", json={"name": "Dev"})
    key = make_user(octo, "ops", "administrator")
    ops = api.as_key(key)
    assert names(ops.get("/environments")) == ["Dev"]
    assert names(ops.get("/environments")) == ["Dev"]
    mine = ops.get("/api-keys").json()["items"]
    assert len(mine) == 1
    assert ops.delete(f"/api-keys/{mine[0]['id']}").status_code == 200
    assert ops.get("/environments").status_code == 401


def test_an_answer_computed_across_a_write_is_not_kept() -> None:
    cache = ResponseCache()
    key = ("k:abc", "/api/v1/projects", "")
    started = cache.version
    cache.invalidate()  # a write committed while the read ran
    cache.put(key, started, b"stale")
    assert cache.get(key) is None
    cache.put(key, cache.version, b"fresh")
    assert cache.get(key) == b"fresh"


def test_entries_expire_when_another_node_may_write(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ResponseCache(ttl=1.0)
    key = ("k:abc", "/api/v1/projects", "")
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now)
    cache.put(key, cache.version, b"x")
    assert cache.get(key) == b"x"
    monkeypatch.setattr(time, "monotonic", lambda: now + 1.5)
    assert cache.get(key) is None
