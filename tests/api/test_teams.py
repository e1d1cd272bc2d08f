"""``/teams`` and ``/roles``: members, scoped role grants, and the built-in team's rules."""

from __future__ import annotations

from octo_appliance.db import Team, TeamMember, TeamRole
from octo_appliance.security.permissions import ROLES
from tests.api.helpers import client_as, events, make_user, user_id


def _setup(api):
    env = api.post("/environments", json={"name": "Prod"}).json()["id"]
    project = api.post("/projects", json={"name": "Web"}).json()["id"]
    return env, project


def test_create_list_get_update_delete(octo, api):
    env, project = _setup(api)
    make_user(octo, "vic")
    make_user(octo, "dan")
    created = api.post(
        "/teams",
        json={
            "name": "Web deployers",
            "description": "ship the web site",
            "members": ["vic", user_id("dan")],
            "roles": [
                {"role": "project-deployer", "projects": ["Web"], "environments": [env]},
                {"role": "viewer"},
            ],
        },
    )
    assert created.status_code == 201, created.text
    team = created.json()
    assert team["id"].startswith("team_")
    assert team["builtin"] is False
    assert [m["username"] for m in team["members"]] == ["dan", "vic"]
    assert sorted(team["roles"], key=lambda r: r["role"]) == [
        {"role": "project-deployer", "environments": [env], "projects": [project]},
        {"role": "viewer", "environments": [], "projects": []},
    ]

    listed = api.get("/teams").json()
    assert [t["name"] for t in listed["items"]] == ["Administrators", "Web deployers"]
    assert listed["items"][0]["builtin"] is True
    assert api.get("/teams", params={"name": "deploy"}).json()["total"] == 1
    assert api.get("/teams/Web deployers").json()["id"] == team["id"]

    # members/roles left out keep their value
    renamed = api.put(f"/teams/{team['id']}", json={"name": "Web team"}).json()
    assert renamed["name"] == "Web team"
    assert len(renamed["members"]) == 2
    assert len(renamed["roles"]) == 2
    # ... and given, replace the whole list
    replaced = api.put(
        "/teams/Web team", json={"members": ["vic"], "roles": [{"role": "viewer"}]}
    ).json()
    assert [m["username"] for m in replaced["members"]] == ["vic"]
    assert replaced["roles"] == [{"role": "viewer", "environments": [], "projects": []}]
    assert TeamRole.select().where(TeamRole.team == team["id"]).count() == 1

    assert api.delete("/teams/Web team").json() == {"id": team["id"], "deleted": True}
    assert api.get(f"/teams/{team['id']}").status_code == 404
    assert not TeamMember.select().where(TeamMember.team == team["id"]).exists()
    assert not TeamRole.select().where(TeamRole.team == team["id"]).exists()


def test_unknown_references_and_roles_are_422(octo, api):
    _setup(api)
    unknown = api.post(
        "/teams",
        json={
            "name": "T",
            "members": ["admin", "ghost", "phantom"],
        },
    )
    assert unknown.status_code == 422
    body = unknown.json()["error"]
    assert "ghost" in body["message"] and "phantom" in body["message"]
    assert {d["field"] for d in body["details"]} == {"members"}

    env_missing = api.post(
        "/teams", json={"name": "T", "roles": [{"role": "viewer", "environments": ["Mars"]}]}
    )
    assert env_missing.status_code == 422
    assert env_missing.json()["error"]["details"][0]["field"] == "roles.0.environments"
    project_missing = api.post(
        "/teams", json={"name": "T", "roles": [{"role": "viewer", "projects": ["Nope"]}]}
    )
    assert project_missing.status_code == 422
    assert "Nope" in project_missing.json()["error"]["message"]

    bad_role = api.post("/teams", json={"name": "T", "roles": [{"role": "superuser"}]})
    assert bad_role.status_code == 422
    assert bad_role.json()["error"]["details"][0]["field"] == "roles.0.role"
    assert "superuser" in bad_role.json()["error"]["details"][0]["message"]
    assert api.post("/teams", json={"name": "T", "colour": "red"}).status_code == 422
    assert api.post("/teams", json={"name": ""}).status_code == 422
    assert not Team.select().where(Team.name == "T").exists()

    assert api.post("/teams", json={"name": "T"}).status_code == 201
    assert api.post("/teams", json={"name": "T"}).status_code == 409
    api.post("/teams", json={"name": "U"})
    assert api.put("/teams/U", json={"name": "T"}).status_code == 409
    assert api.put("/teams/U", json={"members": ["ghost"]}).status_code == 422
    assert api.get("/teams/nope").status_code == 404


def test_membership_changes_take_effect_at_once(octo, api):
    vic = client_as(octo, make_user(octo, "vic"))
    assert vic.get("/environments").status_code == 403  # cached principal without grants
    team = api.post("/teams", json={"name": "Ops", "members": ["vic"]}).json()

    api.put("/teams/Ops", json={"roles": [{"role": "administrator"}]})
    assert vic.post("/environments", json={"name": "Dev"}).status_code == 201

    api.put("/teams/Ops", json={"roles": [{"role": "viewer"}]})
    assert vic.post("/environments", json={"name": "Test"}).status_code == 403
    assert vic.get("/environments").status_code == 200

    api.put("/teams/Ops", json={"members": []})
    assert vic.get("/environments").status_code == 403

    api.put("/teams/Ops", json={"members": ["vic"]})
    assert vic.get("/environments").status_code == 200
    api.delete(f"/teams/{team['id']}")
    assert vic.get("/environments").status_code == 403


def test_scoped_grants_limit_what_members_see(octo, api):
    env, _ = _setup(api)
    api.post("/environments", json={"name": "Dev"})
    make_user(octo, "vic")
    api.post(
        "/teams",
        json={
            "name": "Prod viewers",
            "members": ["vic"],
            "roles": [{"role": "viewer", "environments": ["Prod"]}],
        },
    )
    vic = client_as(octo, octo.key_for("vic"))
    assert [e["name"] for e in vic.get("/environments").json()["items"]] == ["Prod"]
    assert vic.get("/environments/Dev").status_code == 403
    assert vic.get(f"/environments/{env}").status_code == 200


def test_builtin_administrators_team_is_protected(octo, api):
    admins = api.get("/teams/Administrators").json()
    original_members = admins["members"]
    checks = [
        api.delete("/teams/Administrators"),
        api.put("/teams/Administrators", json={"name": "Admins"}),
        api.put("/teams/Administrators", json={"members": []}),
        api.put("/teams/Administrators", json={"roles": []}),
        api.put("/teams/Administrators", json={"roles": [{"role": "viewer"}]}),
        api.put(
            "/teams/Administrators",
            json={"roles": [{"role": "administrator", "environments": [_setup(api)[0]]}]},
        ),
    ]
    for response in checks:
        assert response.status_code == 409, response.text
        assert response.json()["error"]["hint"]
    after = api.get("/teams/Administrators").json()
    assert after["members"] == original_members  # every refused change rolled back
    assert after["roles"] == [{"role": "administrator", "environments": [], "projects": []}]
    assert api.get("/users/me").status_code == 200

    # allowed: other changes to it
    make_user(octo, "ops")
    ok = api.put(
        "/teams/Administrators",
        json={
            "description": "people who run it",
            "members": ["admin", "ops"],
            "roles": [{"role": "administrator"}, {"role": "viewer"}],
        },
    )
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["members"]) == 2


def test_change_leaving_no_active_administrator_is_refused(octo, api):
    make_user(octo, "sleepy", active=False)
    api.put("/teams/Administrators", json={"members": ["admin", "sleepy"]})
    # the built-in team keeps a member, but no active one
    refused = api.put("/teams/Administrators", json={"members": ["sleepy"]})
    assert refused.status_code == 409
    assert "no active administrator" in refused.json()["error"]["message"]
    assert api.get("/users/me").status_code == 200

    # an admin through another team may leave that team while the built-in one holds admin
    ops = client_as(octo, make_user(octo, "ops", "administrator"))
    assert ops.put("/teams/ops team", json={"roles": [{"role": "viewer"}]}).status_code == 200
    assert ops.post("/teams", json={"name": "X"}).status_code == 403


def test_viewers_read_teams_but_only_admins_change_them(octo, api):
    viewer = client_as(octo, make_user(octo, "vic", "viewer"))
    deployer = client_as(octo, make_user(octo, "dep", "project-deployer"))
    assert viewer.get("/teams").status_code == 200
    assert viewer.get("/teams/Administrators").status_code == 200
    for caller in (viewer, deployer):
        assert caller.post("/teams", json={"name": "Mine"}).status_code == 403
        assert (
            caller.put("/teams/vic team", json={"roles": [{"role": "administrator"}]}).status_code
            == 403
        )
        assert caller.put("/teams/Administrators", json={"members": ["vic"]}).status_code == 403
        assert caller.delete("/teams/vic team").status_code == 403
    assert viewer.post("/environments", json={"name": "Dev"}).status_code == 403


def test_project_limited_administrator_cannot_escalate(octo, api):
    _, project = _setup(api)
    pam = client_as(octo, make_user(octo, "pam", "administrator", projects=[project]))
    assert pam.get("/teams").status_code == 403
    assert (
        pam.put("/teams/pam team", json={"roles": [{"role": "administrator"}]}).status_code == 403
    )
    assert pam.put("/teams/Administrators", json={"members": ["admin", "pam"]}).status_code == 403
    assert len(api.get("/teams/Administrators").json()["members"]) == 1


def test_roles_lists_builtin_roles(octo, api):
    viewer = client_as(octo, make_user(octo, "nobody"))  # no team: still may read roles
    response = viewer.get("/roles")
    assert response.status_code == 200
    roles = {r["name"]: r for r in response.json()["items"]}
    assert (
        set(roles) == set(ROLES) == {"administrator", "project-deployer", "viewer", "worker-user"}
    )
    assert roles["worker-user"]["permissions"] == ["worker.use"]
    assert "worker.use" not in roles["project-deployer"]["permissions"]
    assert "user.edit" in roles["administrator"]["permissions"]
    assert "project.edit" in roles["project-deployer"]["permissions"]
    assert "target.edit" not in roles["project-deployer"]["permissions"]
    assert all(not p.endswith(".edit") for p in roles["viewer"]["permissions"])
    assert client_as(octo, None).get("/roles").status_code == 401


def test_team_changes_are_audited(octo, api):
    make_user(octo, "vic")
    team = api.post(
        "/teams", json={"name": "Ops", "members": ["vic"], "roles": [{"role": "viewer"}]}
    ).json()
    api.put("/teams/Ops", json={"members": []})
    api.delete("/teams/Ops")
    created, updated, deleted = (
        events(resource_type="team", action=a)[0] for a in ("create", "update", "delete")
    )
    admin = user_id("admin")
    for event in (created, updated, deleted):
        assert event.user_id == admin
        assert event.resource_id == team["id"]
        assert event.resource_name == "Ops"
    assert created.details["members"] == [user_id("vic")]
    assert created.details["roles"] == [{"role": "viewer", "environments": [], "projects": []}]
    assert updated.details == {"members": []}
