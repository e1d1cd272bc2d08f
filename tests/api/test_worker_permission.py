"""``worker.use``: running code on the appliance machine is an administrator's decision.

A process with a ``run_on: appliance`` step needs ``worker.use`` to be saved, released and
deployed (the deployer's own, whoever saved the process); the script console aimed at the
built-in worker likewise. On SQLite and PostgreSQL, through HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest

from octo_appliance.db import Team, TeamRole
from octo_appliance.security.permissions import ROLES, Permission
from tests.api.deploy_support import held_engine
from tests.api.helpers import make_user

ON_APPLIANCE = {
    "name": "Takeover",
    "type": "run-script",
    "properties": {"syntax": "bash", "body": "id", "run_on": "appliance"},
}
ON_TARGETS = {
    "name": "Web",
    "type": "run-script",
    "roles": ["web"],
    "properties": {"syntax": "bash", "body": "echo hi"},
}


def forbidden_for_worker(response: Any) -> None:
    assert response.status_code == 403, response.text
    message = response.json()["error"]["message"]
    assert "'worker.use'" in message and "'Takeover'" in message, message


@pytest.fixture
def world(api):  # type: ignore[no-untyped-def]
    ids = {name: api.post("/environments", json={"name": name}).json()["id"] for name in ("Dev",)}
    api.post(
        "/lifecycles", json={"name": "Main", "phases": [{"name": "D", "environments": ["Dev"]}]}
    )
    ids["Shop"] = api.post("/projects", json={"name": "Shop", "lifecycle": "Main"}).json()["id"]
    return ids


def deployer(octo, world, name: str, *, worker: bool = False):  # type: ignore[no-untyped-def]
    """A user whose grant is project-deployer on Shop in Dev (plus worker-user, if asked)."""
    scope = {"environments": [world["Dev"]], "projects": [world["Shop"]]}
    key = make_user(octo, name, "project-deployer", **scope)
    if worker:
        team = Team.get(Team.name == f"{name} team")
        TeamRole.create_new(team=team, role="worker-user", **scope)
        octo.appliance.security_changed()
    return octo.api.as_key(key)


def test_only_administrators_hold_worker_use() -> None:
    holders = {
        role for role, (_, permissions) in ROLES.items() if Permission.WORKER_USE in permissions
    }
    assert holders == {"administrator", "worker-user"}
    assert ROLES["worker-user"][1] == frozenset({Permission.WORKER_USE})


def test_a_scoped_deployer_cannot_put_a_step_on_the_appliance(octo, api, world):
    """The issue's reproduction, at the API: the process edit is refused, nothing stored."""
    dora = deployer(octo, world, "dora")
    forbidden_for_worker(dora.put("/projects/Shop/process", json={"steps": [ON_APPLIANCE]}))
    assert api.get("/projects/Shop/process").json()["steps"] == []
    # the same deployer may still edit a process that runs on targets only
    assert dora.put("/projects/Shop/process", json={"steps": [ON_TARGETS]}).status_code == 200
    # and an administrator (or a worker-user) may save the appliance step
    assert api.put("/projects/Shop/process", json={"steps": [ON_APPLIANCE]}).status_code == 200
    walt = deployer(octo, world, "walt", worker=True)
    both = {"steps": [ON_TARGETS, ON_APPLIANCE]}
    assert walt.put("/projects/Shop/process", json=both).status_code == 200
    # once the process holds such a step, a deployer without worker.use cannot save it again
    forbidden_for_worker(dora.put("/projects/Shop/process", json=both))


def test_release_and_deploy_need_the_deployers_own_worker_use(octo, api, world):
    assert api.put("/projects/Shop/process", json={"steps": [ON_APPLIANCE]}).status_code == 200
    dora = deployer(octo, world, "dora")
    forbidden_for_worker(dora.post("/projects/Shop/releases", json={"version": "1.0.0"}))
    assert api.get("/projects/Shop/releases").json()["items"] == []
    release = api.post("/projects/Shop/releases", json={"version": "1.0.0"}).json()["id"]
    body = {"release": release, "environment": "Dev"}
    with held_engine(octo):
        # saved and released by an administrator: still refused to a deployer without it
        forbidden_for_worker(dora.post("/deployments", json=body))
        # skipping the appliance step leaves nothing to check
        assert (
            dora.post("/deployments", json={**body, "skip_steps": ["Takeover"]}).status_code == 201
        )
        walt = deployer(octo, world, "walt", worker=True)
        assert walt.post("/deployments", json=body).status_code == 201


def test_worker_use_follows_the_grant_scope(octo, api, world):
    """A worker-user grant on another environment does not cover this one."""
    assert api.put("/projects/Shop/process", json={"steps": [ON_APPLIANCE]}).status_code == 200
    release = api.post("/projects/Shop/releases", json={"version": "1.0.0"}).json()["id"]
    api.post("/environments", json={"name": "Prod"})
    key = make_user(octo, "pat", "project-deployer", projects=[world["Shop"]])
    team = Team.get(Team.name == "pat team")
    prod = api.get("/environments?name=Prod").json()["items"][0]["id"]
    TeamRole.create_new(team=team, role="worker-user", environments=[prod], projects=[])
    octo.appliance.security_changed()
    with held_engine(octo):
        forbidden_for_worker(
            octo.api.as_key(key).post(
                "/deployments", json={"release": release, "environment": "Dev"}
            )
        )


def test_the_script_console_on_the_built_in_worker_needs_worker_use(octo, api, world):
    """An administrator limited to one environment may run scripts there, but not on a
    target of style ``local`` (the built-in worker)."""
    local = api.post(
        "/targets",
        json={
            "name": "here",
            "environments": ["Dev"],
            "roles": ["w"],
            "communication_style": "local",
        },
    )
    assert local.status_code == 201, local.text
    key = make_user(octo, "ada", "administrator", environments=[world["Dev"]])
    body = {"environment": "Dev", "syntax": "bash", "body": "id"}
    with held_engine(octo, kinds=("script",)):
        refused = octo.api.as_key(key).post("/scripts", json=body)
        assert refused.status_code == 403, refused.text
        assert "'worker.use'" in refused.json()["error"]["message"]
        assert api.post("/scripts", json=body).status_code == 202
