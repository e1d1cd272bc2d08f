"""Users, teams and grants, API keys, the audit log and plugins in the portal, in process."""

from __future__ import annotations

import re

import pytest

from octo_appliance.db import ApiKey, Team, TeamRole, User
from octo_appliance.testing import OctoTestAppliance
from tests.portal.admin_support import field_error, post, signed_in


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    return octo_appliance_factory()


def test_create_a_user_and_never_echo_the_password(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    short = {"username": "vera", "display_name": "Vera V", "password": "short-pw"}
    short |= {"is_active": "on"}
    refused = post(client, "/users", short)
    assert refused.status_code == 422
    assert "at least 12" in field_error(refused.text, "user-password")
    assert 'value="Vera V"' in refused.text and "short-pw" not in refused.text
    made = post(client, "/users", {**short, "password": "a-long-password-1"})
    assert (made.status_code, made.headers["location"]) == (303, "/users")
    listing = client.get("/users").text
    assert re.search(r'<th scope="row">vera</th>\s*<td>Vera V</td>', listing)
    assert "a-long-password-1" not in listing
    taken = post(client, "/users", {"username": "vera"})
    assert "already exists" in field_error(taken.text, "user-username")
    vera = User.get(User.username == "vera")
    off = post(client, f"/users/{vera.id}/active", {})
    assert off.status_code == 303 and not User.get_by_id(vera.id).is_active
    on = post(client, f"/users/{vera.id}/active", {"active": "on"})
    assert on.status_code == 303 and User.get_by_id(vera.id).is_active


def test_a_team_with_a_scoped_grant_and_errors_next_to_the_row(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    octo.api.post("/environments", json={"name": "Dev"})
    octo.api.post("/projects", json={"name": "Shop"})
    post(client, "/users", {"username": "dora", "password": "dora-password-1", "is_active": "on"})
    unknown = {
        "name": "Deployers",
        "members": "dora",
        "grant-0-role": "project-deployer",
        "grant-0-environments": "Dev",
        "grant-0-projects": "Nope",
    }
    refused = post(client, "/teams", unknown)
    assert refused.status_code == 422
    assert "Nope" in field_error(refused.text, "grant-0-projects")
    assert 'value="Deployers"' in refused.text and 'value="Nope"' in refused.text
    made = post(client, "/teams", {**unknown, "grant-0-projects": "Shop"})
    assert made.status_code == 303
    team = Team.get(Team.name == "Deployers")
    assert made.headers["location"] == f"/teams/{team.id}"
    grant = TeamRole.get(TeamRole.team == team.id)
    assert grant.role == "project-deployer" and len(grant.environments) == 1
    page = client.get(f"/teams/{team.id}").text
    assert "<strong>project-deployer</strong> in Dev for Shop" in page
    # the grant row shows names as typed, and an empty role removes it
    assert re.search(r'id="grant-0-environments"[^>]*value="Dev"', page)
    edited = post(client, f"/teams/{team.id}", {"name": "Deployers", "members": "dora"})
    assert edited.status_code == 303
    assert not TeamRole.select().where(TeamRole.team == team.id).exists()
    bad_member = post(client, f"/teams/{team.id}", {"name": "Deployers", "members": "ghost"})
    assert "ghost" in field_error(bad_member.text, "team-members")
    assert post(client, f"/teams/{team.id}/delete").status_code == 303
    assert not Team.select().where(Team.name == "Deployers").exists()


def test_the_administrators_team_keeps_its_rules(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    admins = Team.get(Team.name == "Administrators")
    emptied = post(client, f"/teams/{admins.id}", {"name": "Administrators", "members": ""})
    assert emptied.status_code == 422
    assert "cannot lose its last member" in emptied.text
    assert 'role="alert"' in emptied.text
    refused = post(client, f"/teams/{admins.id}/delete")
    assert refused.status_code == 409 and "cannot be deleted" in refused.text


def test_a_key_is_shown_once_and_works_until_revoked(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    made = post(client, "/keys", {"name": "ci pipeline"})
    assert made.status_code == 201
    assert made.headers["cache-control"] == "no-store"
    key = re.search(r'aria-label="The new API key"><code>([^<]+)</code>', made.text)
    assert key is not None
    secret = key.group(1)
    assert octo.api.as_key(secret).get("/users/me").json()["username"] == "admin"
    listing = client.get("/keys").text
    assert "ci pipeline" in listing and secret not in listing
    row = ApiKey.get(ApiKey.name == "ci pipeline")
    assert f"<code>{row.prefix}…</code>" in listing
    empty = post(client, "/keys", {"name": ""})
    assert empty.status_code == 422 and field_error(empty.text, "key-name")
    revoked = post(client, f"/keys/{row.id}/revoke")
    assert (revoked.status_code, revoked.headers["location"]) == (303, "/keys")
    assert octo.api.as_key(secret).get("/users/me").status_code == 401


def test_audit_filters_and_pages(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    for n in range(60):
        octo.api.post("/environments", json={"name": f"env-{n:02d}"})
    octo.api.put("/environments/env-07", json={"description": "changed"})
    first = client.get("/audit?resource_type=environment").text
    assert "Events 1 to 50 of 61, newest first." in first
    older = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert older is not None
    assert older.group(1) == "/audit?resource_type=environment&amp;skip=50"
    second = client.get("/audit?resource_type=environment&skip=50").text
    assert "Events 51 to 61 of 61" in second and 'rel="prev"' in second
    updates = client.get("/audit?action=update&user=admin").text
    assert "Events 1 to 1 of 1" in updates and "env-07" in updates
    assert 'value="update"' in updates  # the filter form keeps what was asked
    bad = client.get("/audit?since=yesterday&action=create")
    assert bad.status_code == 422
    assert "ISO 8601" in field_error(bad.text, "audit-since")
    assert 'value="yesterday"' in bad.text and 'value="create"' in bad.text
    later = client.get("/audit?since=2030-01-01T00:00&until=2020-01-01T00:00")
    assert later.status_code == 422 and "earlier" in field_error(later.text, "audit-until")
    window = client.get("/audit?since=2000-01-01T00:00&until=2000-01-02T00:00").text
    assert "No events match." in window


def test_plugins_show_source_version_and_state(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    page = client.get("/plugins").text
    plugins = octo.api.get("/plugins").json()["items"]
    assert plugins
    for plugin in plugins:
        row = re.search(
            rf'<th scope="row">{re.escape(plugin["name"])}(<span class="location">|</th>).*?</tr>',
            page,
            re.DOTALL,
        )
        assert row is not None, plugin["name"]
        assert f"<td>{plugin['source']}</td>" in row.group(0)
        assert f'<span class="plugin-{plugin["state"]}">' in row.group(0)
