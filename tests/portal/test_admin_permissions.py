"""The administration pages' rules, in process: a viewer sees no edit control and a forged
form post is refused (403) by the API's own handler; a post without the CSRF token is refused;
no page ever shows a secret (a sensitive value, a password, an API key, a registration token)
except the one answer that creates it."""

from __future__ import annotations

import re

import pytest

from octo_appliance.db import Environment, Target, Team, User
from octo_appliance.testing import OctoTestAppliance
from tests.portal.admin_support import make_target, post, signed_in, user_with_role
from tests.portal.support import inline_scripts

ADMIN_PAGES = ("/environments", "/users", "/teams", "/keys", "/audit", "/plugins")


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    return octo_appliance_factory()


def _world(octo: OctoTestAppliance) -> dict[str, str]:
    env = octo.api.post("/environments", json={"name": "Dev"}).json()["id"]
    target = make_target(octo, "web-1", env, ["web"])
    team = octo.api.post("/teams", json={"name": "Ops"}).json()["id"]
    return {"env": env, "target": target, "team": team}


def _forms(html: str) -> list[str]:
    """The actions of the page's forms, but the sign-out form every page has."""
    return [a for a in re.findall(r'<form[^>]*action="([^"]+)"', html) if a != "/signout"]


def test_a_viewer_sees_no_edit_controls(octo: OctoTestAppliance) -> None:
    ids = _world(octo)
    client = signed_in(octo, "vera", user_with_role(octo, "vera", "viewer"))
    env_page = client.get(f"/environments/{ids['env']}").text
    assert "web-1" in env_page  # a viewer reads
    assert _forms(env_page) == [] and "Add a target" not in env_page
    assert _forms(client.get("/environments").text) == []
    # a health check needs only target.view in the API: it is the one button a viewer gets
    assert _forms(client.get(f"/targets/{ids['target']}").text) == [
        f"/targets/{ids['target']}/health-check"
    ]
    assert _forms(client.get("/teams").text) == []
    assert _forms(client.get(f"/teams/{ids['team']}").text) == []
    assert client.get("/users").status_code == 403  # user.view is an administrator's
    assert client.get("/audit").status_code == 403


def test_a_forged_post_from_a_viewer_is_refused(octo: OctoTestAppliance) -> None:
    ids = _world(octo)
    client = signed_in(octo, "vera", user_with_role(octo, "vera", "viewer"))
    forged = {
        "/environments": {"name": "Forged"},
        f"/environments/{ids['env']}": {"name": "Renamed"},
        f"/environments/{ids['env']}/delete": {},
        f"/environments/{ids['env']}/add-target": {"roles": "web", "mode": "polling"},
        f"/targets/{ids['target']}": {"name": "x", "environments": "Dev", "roles": "web"},
        f"/targets/{ids['target']}/delete": {},
        "/users": {"username": "mallory", "password": "mallory-password-1"},
        "/teams": {"name": "Mine", "members": "vera", "grant-0-role": "administrator"},
        f"/teams/{ids['team']}": {"name": "Ops", "members": "vera"},
        f"/teams/{ids['team']}/delete": {},
    }
    for path, fields in forged.items():
        answer = post(client, path, fields)
        assert answer.status_code == 403, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "you lack the permission" in answer.text, path
    assert [e.name for e in Environment.select()] == ["Dev"]
    assert Target.select().count() == 1
    assert sorted(t.name for t in Team.select()) == ["Administrators", "Ops", "vera team"]
    assert not User.select().where(User.username == "mallory").exists()


def test_a_post_without_the_csrf_token_is_refused(octo: OctoTestAppliance) -> None:
    ids = _world(octo)
    client = signed_in(octo)
    for path, fields in {
        "/environments": {"name": "NoToken"},
        f"/targets/{ids['target']}/delete": {},
        "/keys": {"name": "sneaky"},
        "/users": {"username": "sneaky", "password": "sneaky-password-1"},
    }.items():
        for token in ("", "guessed"):
            answer = client.post(path, data={**fields, "csrf_token": token})
            assert answer.status_code == 403, path
            assert "CSRF" in answer.text
    assert not Environment.select().where(Environment.name == "NoToken").exists()
    assert Target.select().count() == 1
    assert not User.select().where(User.username == "sneaky").exists()


def test_no_page_shows_a_secret(octo: OctoTestAppliance) -> None:
    ids = _world(octo)
    project = octo.api.post("/projects", json={"name": "Shop"}).json()["id"]
    sensitive = "canary-value-91c2f4"
    variable = {"name": "Db.Password", "value": sensitive, "sensitive": True}
    octo.api.put(f"/projects/{project}/variables", json={"variables": [variable]})
    client = signed_in(octo)
    password = "new-user-password-77"
    post(client, "/users", {"username": "nina", "password": password, "is_active": "on"})
    key_page = post(client, "/keys", {"name": "ci"}).text
    key = re.search(r'aria-label="The new API key"><code>([^<]+)</code>', key_page)
    add = post(client, f"/environments/{ids['env']}/add-target", {"roles": "web"}).text
    token = re.search(r"--token (\S+) --poll", add)
    assert key is not None and token is not None
    secrets = (sensitive, password, key.group(1), token.group(1), octo.admin_key)
    pages = [
        *ADMIN_PAGES,
        f"/environments/{ids['env']}",
        f"/environments/{ids['env']}/add-target",
        f"/targets/{ids['target']}",
        f"/teams/{ids['team']}",
        "/audit?resource_type=api-key",
        "/audit?resource_type=registration-token",
        "/audit?resource_type=project",
    ]
    for path in pages:
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert inline_scripts(answer.text) == [], path
        for secret in secrets:
            assert secret not in answer.text, (path, secret[:6])
