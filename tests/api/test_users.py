"""``/users``: CRUD, password handling, ``/users/me``, and the rules that keep an admin."""

from __future__ import annotations

from octo_appliance.api.auth import CSRF_HEADER, SESSION_COOKIE
from octo_appliance.db import LoginSession, Team, TeamMember, User
from octo_appliance.security.passwords import verify_password
from tests.api.helpers import (
    all_audit_text,
    client_as,
    events,
    login,
    make_user,
    session_client,
    user_id,
)

SECRET = "correct horse battery staple"


def test_create_list_get_update_delete(api):
    created = api.post(
        "/users",
        json={
            "username": "jane.doe@example",
            "display_name": "Jane Doe",
            "email": "jane@example.com",
            "password": SECRET,
        },
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["id"].startswith("usr_")
    assert user["has_password"] is True
    assert user["is_active"] is True
    assert user["teams"] == []
    assert "password" not in user and "password_hash" not in user
    assert SECRET not in created.text

    stored = User.get_by_id(user["id"])
    assert stored.password_hash.startswith("scrypt$")
    assert verify_password(SECRET, stored.password_hash)

    api.post("/users", json={"username": "robot-ci"})
    listed = api.get("/users").json()
    assert [u["username"] for u in listed["items"]] == ["admin", "jane.doe@example", "robot-ci"]
    assert listed["total"] == 3
    robot = listed["items"][2]
    assert robot["has_password"] is False
    assert listed["items"][0]["teams"][0]["name"] == "Administrators"
    assert all(SECRET not in str(u) for u in listed["items"])

    assert api.get("/users", params={"name": "JANE"}).json()["total"] == 1
    assert api.get("/users", params={"name": "doe"}).json()["total"] == 1  # display name
    assert api.get("/users/jane.doe@example").json()["id"] == user["id"]
    assert api.get(f"/users/{user['id']}").json()["email"] == "jane@example.com"

    updated = api.put(f"/users/{user['id']}", json={"display_name": "J. Doe"})
    assert updated.status_code == 200
    assert updated.json()["display_name"] == "J. Doe"
    assert updated.json()["email"] == "jane@example.com"

    deleted = api.delete("/users/jane.doe@example")
    assert deleted.json() == {"id": user["id"], "deleted": True}
    assert api.get(f"/users/{user['id']}").status_code == 404


def test_bad_input(api):
    def error_fields(response):
        return [d["field"] for d in response.json()["error"]["details"]]

    bad_name = api.post("/users", json={"username": "has space"})
    assert bad_name.status_code == 422
    assert error_fields(bad_name) == ["username"]
    assert api.post("/users", json={"username": "x/y"}).status_code == 422
    assert api.post("/users", json={"username": ""}).status_code == 422
    reserved = api.post("/users", json={"username": "me"})
    assert reserved.status_code == 422
    assert "reserved" in reserved.text
    short = api.post("/users", json={"username": "bob", "password": "short-pw"})
    assert short.status_code == 422
    assert error_fields(short) == ["password"]
    assert "short-pw" not in short.text  # the rejected password is not echoed
    assert api.post("/users", json={"username": "bob", "email": "not an email"}).status_code == 422
    assert api.post("/users", json={"username": "bob", "role": "admin"}).status_code == 422
    assert api.put("/users/admin", json={"password": "x" * 11}).status_code == 422
    assert api.get("/users/usr_missing").status_code == 404
    assert api.put("/users/usr_missing", json={}).status_code == 404

    assert api.post("/users", json={"username": "bob"}).status_code == 201
    duplicate = api.post("/users", json={"username": "bob"})
    assert duplicate.status_code == 409
    api.post("/users", json={"username": "rob"})
    assert api.put("/users/rob", json={"username": "bob"}).status_code == 409
    assert User.select().where(User.username == "rob").exists()


def test_password_never_reaches_audit_log(api):
    api.post("/users", json={"username": "bob", "password": SECRET})
    api.put("/users/bob", json={"password": SECRET + "!"})
    created = events(action="create", resource_type="user")[0]
    updated = events(action="update", resource_type="user")[0]
    assert created.details["username"] == "bob"
    assert created.details["password_changed"] is True
    assert updated.details == {"password_changed": True}
    assert SECRET not in all_audit_text()
    assert "scrypt$" not in all_audit_text()


def test_viewer_cannot_manage_users(octo, api):
    viewer = client_as(octo, make_user(octo, "vic", "viewer"))
    assert viewer.get("/users").status_code == 403
    assert viewer.get("/users/admin").status_code == 403
    assert viewer.post("/users", json={"username": "eve"}).status_code == 403
    assert viewer.put("/users/admin", json={"password": "x" * 20}).status_code == 403
    assert viewer.delete("/users/admin").status_code == 403
    assert not User.select().where(User.username == "eve").exists()


def test_administrator_limited_to_a_project_cannot_manage_users(octo, api):
    """A project-limited administrator grant must not reach global resources."""
    project = api.post("/projects", json={"name": "Web"}).json()["id"]
    limited = client_as(octo, make_user(octo, "pam", "administrator", projects=[project]))
    assert limited.get("/users").status_code == 403
    assert limited.post("/users", json={"username": "eve"}).status_code == 403


def test_me_shows_teams_and_effective_grants(octo, api):
    env = api.post("/environments", json={"name": "Prod"}).json()["id"]
    viewer = client_as(octo, make_user(octo, "vic", "viewer", environments=[env]))
    me = viewer.get("/users/me")
    assert me.status_code == 200
    body = me.json()
    assert body["username"] == "vic"
    assert body["teams"] == [{"id": body["teams"][0]["id"], "name": "vic team"}]
    assert body["grants"] == [
        {
            "team": body["teams"][0],
            "role": "viewer",
            "environments": [env],
            "projects": [],
        }
    ]
    assert "environment.view" in body["permissions"]
    assert "environment.edit" not in body["permissions"]
    assert body["authenticated_via"] == "api-key"

    admin_me = api.get("/users/me").json()
    assert admin_me["username"] == "admin"
    assert "user.edit" in admin_me["permissions"]

    nobody = client_as(octo, make_user(octo, "nobody"))
    assert nobody.get("/users/me").json()["permissions"] == []
    assert client_as(octo, None).get("/users/me").status_code == 401


def test_cannot_delete_or_deactivate_yourself(api):
    me = user_id("admin")
    for response in (
        api.delete("/users/admin"),
        api.delete(f"/users/{me}"),
        api.put("/users/admin", json={"is_active": False}),
    ):
        assert response.status_code == 409
        assert response.json()["error"]["hint"]
    assert User.get_by_id(me).is_active


def test_last_member_of_administrators_cannot_be_deleted(octo, api):
    """Another admin (through another team) may not empty the built-in team."""
    other_admin = client_as(octo, make_user(octo, "ops", "administrator"))
    response = other_admin.delete("/users/admin")
    assert response.status_code == 409
    assert "Administrators" in response.json()["error"]["message"]
    assert User.select().where(User.username == "admin").exists()
    # the same user may go once the built-in team has someone else
    team = Team.get(Team.name == "Administrators")
    TeamMember.create_new(team=team, user=User.get(User.username == "ops"))
    assert other_admin.delete("/users/admin").status_code == 200


def test_one_administrator_may_deactivate_another(octo, api):
    """Allowed while the caller stays an active administrator; undone by reactivation.

    (Leaving no active administrator at all is refused too; through ``/users`` that would
    need the caller to remove themselves, so the team tests cover that rule.)
    """
    ops = client_as(octo, make_user(octo, "ops", "administrator"))
    admin_id = user_id("admin")
    assert api.get("/users/me").status_code == 200  # cached
    assert ops.put("/users/admin", json={"is_active": False}).status_code == 200
    assert api.get("/users/me").status_code == 401
    assert ops.put(f"/users/{admin_id}", json={"is_active": True}).status_code == 200
    assert api.get("/users/me").status_code == 200


def test_deactivation_stops_keys_and_sessions_at_once(octo, api):
    key = make_user(octo, "vic", "viewer", password=SECRET)
    viewer = client_as(octo, key)
    browser = session_client(octo)
    assert login(browser, "vic", SECRET).status_code == 200
    # use both, so the principals are cached
    assert viewer.get("/environments").status_code == 200
    assert browser.get("/api/v1/environments").status_code == 200

    assert api.put("/users/vic", json={"is_active": False}).json()["is_active"] is False
    assert viewer.get("/environments").status_code == 401
    assert browser.get("/api/v1/environments").status_code == 401
    assert not LoginSession.select().where(LoginSession.user == user_id("vic")).exists()
    assert login(session_client(octo), "vic", SECRET).status_code == 401

    api.put("/users/vic", json={"is_active": True})
    assert viewer.get("/environments").status_code == 200  # keys survive deactivation
    assert login(session_client(octo), "vic", SECRET).status_code == 200


def test_admin_password_reset_ends_sessions(octo, api):
    make_user(octo, "vic", "viewer", password=SECRET)
    browser = session_client(octo)
    login(browser, "vic", SECRET)
    assert browser.get("/api/v1/users/me").status_code == 200

    new_password = "a brand new password"
    response = api.put("/users/vic", json={"password": new_password})
    assert response.status_code == 200
    assert response.json()["has_password"] is True
    assert browser.get("/api/v1/users/me").status_code == 401
    assert login(session_client(octo), "vic", SECRET).status_code == 401
    assert login(session_client(octo), "vic", new_password).status_code == 200


def test_change_own_password(octo):
    make_user(octo, "vic", "viewer", password=SECRET)
    other_device = session_client(octo)
    login(other_device, "vic", SECRET)
    browser = session_client(octo)
    csrf = login(browser, "vic", SECRET).json()["csrf_token"]
    headers = {CSRF_HEADER: csrf}

    wrong = browser.post(
        "/api/v1/users/me/password",
        json={"current_password": "not it", "new_password": "another long password"},
        headers=headers,
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["field"] == "current_password"
    too_short = browser.post(
        "/api/v1/users/me/password",
        json={"current_password": SECRET, "new_password": "short"},
        headers=headers,
    )
    assert too_short.status_code == 422

    changed = browser.post(
        "/api/v1/users/me/password",
        json={"current_password": SECRET, "new_password": "another long password"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"changed": True, "other_sessions_ended": 1}
    assert browser.get("/api/v1/users/me").status_code == 200  # this session stays
    assert other_device.get("/api/v1/users/me").status_code == 401  # the other one ended
    assert browser.cookies.get(SESSION_COOKIE)
    assert login(session_client(octo), "vic", "another long password").status_code == 200
    assert "another long password" not in all_audit_text()
    assert events(action="change-password", resource_id=user_id("vic"))


def test_key_only_user_cannot_change_a_password_it_does_not_have(octo):
    robot = client_as(octo, make_user(octo, "robot", "viewer"))
    response = robot.post(
        "/users/me/password",
        json={"current_password": "anything", "new_password": "a long new password"},
    )
    assert response.status_code == 409


def test_deleting_a_user_removes_keys_and_memberships_but_keeps_audit(octo, api):
    key = make_user(octo, "vic", "viewer")
    vic = client_as(octo, key)
    assert vic.get("/environments").status_code == 200
    vic_id = user_id("vic")
    assert api.delete("/users/vic").status_code == 200
    assert vic.get("/environments").status_code == 401
    team = api.get("/teams/vic team").json()
    assert team["members"] == []
    assert events(action="delete", resource_type="user", resource_id=vic_id)
    assert api.get("/audit", params={"user": "admin", "resource_id": vic_id}).json()["total"] == 1
