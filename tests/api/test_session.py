"""Cookie sessions: sign in, CSRF on writes, sign out, and no user enumeration."""

from __future__ import annotations

from octo_appliance.api.auth import CSRF_HEADER, SESSION_COOKIE
from octo_appliance.db import LoginSession
from octo_appliance.security.passwords import token_hash
from tests.api.helpers import events, login, make_user, session_client


def test_login_sets_cookie_and_cookie_reads_work(octo):
    client = session_client(octo)
    response = login(client, "admin", octo.admin_password)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["username"] == "admin"
    assert body["csrf_token"]
    token = client.cookies.get(SESSION_COOKIE)
    assert token
    cookie_header = response.headers["set-cookie"].lower()
    assert "httponly" in cookie_header
    assert "secure" in cookie_header
    assert "samesite=strict" in cookie_header
    # only hashes are stored
    session = LoginSession.get(LoginSession.token_hash == token_hash(token))
    assert session.csrf_hash == token_hash(body["csrf_token"])
    assert token not in {session.token_hash, session.csrf_hash}

    me = client.get("/api/v1/users/me")
    assert me.status_code == 200
    assert me.json()["username"] == "admin"
    assert me.json()["authenticated_via"] == "session"
    assert client.get("/api/v1/environments").status_code == 200
    assert events(action="login", resource_name="admin")


def test_cookie_write_needs_csrf_token(octo):
    client = session_client(octo)
    csrf = login(client, "admin", octo.admin_password).json()["csrf_token"]

    missing = client.post("/api/v1/environments", json={"name": "Dev"})
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "forbidden"
    assert "csrf" in missing.json()["error"]["message"].lower()

    wrong = client.post(
        "/api/v1/environments", json={"name": "Dev"}, headers={CSRF_HEADER: "not-the-token"}
    )
    assert wrong.status_code == 403

    ok = client.post("/api/v1/environments", json={"name": "Dev"}, headers={CSRF_HEADER: csrf})
    assert ok.status_code == 201, ok.text
    assert client.get("/api/v1/environments").json()["total"] == 1


def test_logout_ends_session(octo):
    client = session_client(octo)
    csrf = login(client, "admin", octo.admin_password).json()["csrf_token"]
    token = client.cookies.get(SESSION_COOKIE)
    assert client.get("/api/v1/users/me").status_code == 200  # now cached

    without_csrf = client.post("/api/v1/auth/logout")
    assert without_csrf.status_code == 403  # logout is a write, too

    out = client.post("/api/v1/auth/logout", headers={CSRF_HEADER: csrf})
    assert out.status_code == 200
    assert out.json() == {"signed_out": True}
    assert not LoginSession.select().where(LoginSession.token_hash == token_hash(token)).exists()

    # the old cookie no longer works, even if a client keeps sending it
    replay = session_client(octo)
    replay.cookies.set(SESSION_COOKIE, token)
    assert replay.get("/api/v1/users/me").status_code == 401
    assert events(action="logout", resource_name="admin")


def test_wrong_password_and_unknown_user_look_the_same(octo):
    make_user(octo, "carol", "viewer", password="carol-password-1")
    client = session_client(octo)

    wrong = login(client, "carol", "not-her-password")
    unknown = login(client, "nobody-here", "whatever-password")
    empty = login(client, "admin", "")  # empty password: a schema error, not a 401
    assert wrong.status_code == 401
    assert unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert empty.status_code == 422
    assert SESSION_COOKIE not in client.cookies
    assert len(events(action="login-failed")) == 2

    assert login(client, "carol", "carol-password-1").status_code == 200


def test_inactive_or_passwordless_users_cannot_sign_in(octo):
    make_user(octo, "dora", "viewer", password="dora-password-12", active=False)
    make_user(octo, "robot", "viewer")  # API-key-only account
    client = session_client(octo)
    inactive = login(client, "dora", "dora-password-12")
    no_password = login(client, "robot", "anything-at-all")
    assert inactive.status_code == 401
    assert no_password.status_code == 401
    assert inactive.json() == no_password.json()


def test_viewer_session_is_still_a_viewer(octo):
    make_user(octo, "vic", "viewer", password="vic-password-123")
    client = session_client(octo)
    csrf = login(client, "vic", "vic-password-123").json()["csrf_token"]
    denied = client.post("/api/v1/environments", json={"name": "X"}, headers={CSRF_HEADER: csrf})
    assert denied.status_code == 403
    assert "environment.edit" in denied.json()["error"]["message"]
