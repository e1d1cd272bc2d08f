"""``/api/v1/interruptions`` on SQLite and PostgreSQL: listing, answering, who may answer,
one answer only, audit and the task log line.

Interruption rows are written directly, as the executor writes them; the deployment and its
task are real (queued through the API and held running by a test engine, so the task's log is
open on this node as it is during a real deployment).
"""

from __future__ import annotations

from typing import Any

import pytest

from octo_appliance.db import AuditEvent, Interruption, Team
from tests.api.deploy_support import held_engine
from tests.api.helpers import make_user
from tests.engine.support import wait_until

MANUAL = ["approve", "reject"]
GUIDED = ["retry", "skip", "exclude-target", "abort"]


@pytest.fixture
def held(octo):  # type: ignore[no-untyped-def]
    with held_engine(octo) as engine:
        yield engine


@pytest.fixture
def world(api, held):  # type: ignore[no-untyped-def]
    ids = {}
    for name in ("Dev", "Prod"):
        ids[name] = api.post("/environments", json={"name": name}).json()["id"]
    for name in ("Shop", "Blog"):
        ids[name] = api.post("/projects", json={"name": name}).json()["id"]
        release = api.post(f"/projects/{name}/releases", json={}).json()["id"]
        deployment = api.post("/deployments", json={"release": release, "environment": "Dev"})
        assert deployment.status_code == 201, deployment.text
        ids[f"{name}-deployment"] = deployment.json()["id"]
        ids[f"{name}-task"] = deployment.json()["task_id"]
    return ids


def ask(world: dict[str, str], project: str = "Shop", **fields: Any) -> str:
    """What the executor writes when a deployment waits for a person."""
    values: dict[str, Any] = {
        "task_id": world[f"{project}-task"],
        "deployment": world[f"{project}-deployment"],
        "kind": "manual-intervention",
        "title": "Approve the deployment to continue: Check",
        "instructions": "look at the site",
        "step_name": "Check",
        "options": MANUAL,
        "environment_id": world["Dev"],
        "project_id": world[project],
    }
    values.update(fields)
    return str(Interruption.create_new(**values).id)


def submit(api, interruption_id, result, notes=None):  # type: ignore[no-untyped-def]
    body = {"result": result} if notes is None else {"result": result, "notes": notes}
    return api.post(f"/interruptions/{interruption_id}/submit", json=body)


def log_text(api, task_id):  # type: ignore[no-untyped-def]
    return "\n".join(line["message"] for line in api.get(f"/tasks/{task_id}/log").json()["items"])


def test_list_get_and_filters(api, world):
    first = ask(world)
    second = ask(world, project="Blog", kind="guided-failure", options=GUIDED, target_name="web")
    done = ask(world, state="submitted", result="approve", submitted_by="someone")
    everything = api.get("/interruptions").json()
    assert everything["total"] == 3
    pending = api.get("/interruptions", params={"pending": "true"}).json()
    assert {item["id"] for item in pending["items"]} == {first, second}
    answered = api.get("/interruptions", params={"pending": "false"}).json()
    assert [item["id"] for item in answered["items"]] == [done]
    by_task = api.get("/interruptions", params={"task": world["Blog-task"]}).json()
    assert [item["id"] for item in by_task["items"]] == [second]
    by_deployment = api.get("/interruptions", params={"deployment": world["Shop-deployment"]})
    assert by_deployment.json()["total"] == 2

    got = api.get(f"/interruptions/{first}").json()
    assert got == next(item for item in everything["items"] if item["id"] == first)
    assert got["deployment_id"] == world["Shop-deployment"]
    assert got["state"] == "pending"
    assert got["result"] is None
    assert got["options"] == MANUAL
    assert got["can_submit"] is True
    assert api.get(f"/interruptions/{done}").json()["can_submit"] is False
    assert api.get("/interruptions/int_000000000000").status_code == 404


def test_submit_records_audits_and_logs(api, world):
    interruption = ask(world)
    response = submit(api, interruption, "approve", "looks good")
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["state"] == "submitted"
    assert (got["result"], got["notes"], got["submitted_by"]) == ("approve", "looks good", "admin")
    assert got["submitted_at"] is not None
    assert got["can_submit"] is False
    row = Interruption.get_by_id(interruption)
    assert (row.state, row.result) == ("submitted", "approve")

    event = AuditEvent.get(AuditEvent.resource_id == interruption)
    assert (event.action, event.resource_type, event.username) == (
        "submit",
        "interruption",
        "admin",
    )
    assert event.details["result"] == "approve"
    assert event.details["task_id"] == world["Shop-task"]

    expected = "Approve the deployment to continue: Check: approve by admin (looks good)"
    wait_until(lambda: expected in log_text(api, world["Shop-task"]), "the log line")

    again = submit(api, interruption, "reject")
    assert again.status_code == 409
    assert "already answered (approve by admin)" in again.json()["error"]["message"]
    assert Interruption.get_by_id(interruption).result == "approve"


def test_the_answer_must_be_one_it_takes(api, world):
    manual = ask(world)
    guided = ask(world, kind="guided-failure", options=GUIDED)
    wrong = submit(api, manual, "retry")
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"] == [
        {"field": "result", "message": "one of: approve, reject"}
    ]
    assert submit(api, guided, "approve").status_code == 422
    assert submit(api, guided, "maybe").status_code == 422  # not an answer at all
    assert api.post(f"/interruptions/{guided}/submit", json={}).status_code == 422
    assert submit(api, guided, "exclude-target").status_code == 200
    assert Interruption.get_by_id(manual).state == "pending"
    assert submit(api, "int_000000000000", "approve").status_code == 404


def test_closed_interruption_is_a_conflict(api, world):
    closed = ask(world, state="closed", notes="the task stopped waiting")
    refused = submit(api, closed, "approve")
    assert refused.status_code == 409
    assert "no longer waits" in refused.json()["error"]["message"]


def test_only_the_responsible_teams_answer(octo, api, world):
    approver_key = make_user(octo, "alice", "viewer")  # in team "alice team"
    team = Team.get(Team.name == "alice team").id
    interruption = ask(world, responsible_teams=[team])
    deployer = api.as_key(make_user(octo, "dora", "project-deployer"))
    refused = submit(deployer, interruption, "approve")
    assert refused.status_code == 403
    assert "alice team" in refused.json()["error"]["message"]
    assert submit(api, interruption, "approve").status_code == 403  # administrators too
    assert deployer.get(f"/interruptions/{interruption}").json()["can_submit"] is False
    alice = api.as_key(approver_key)
    assert alice.get(f"/interruptions/{interruption}").json()["can_submit"] is True
    answered = submit(alice, interruption, "reject", "not today")
    assert answered.status_code == 200
    assert answered.json()["submitted_by"] == "alice"


def test_without_teams_deployers_of_the_environment_answer(octo, api, world):
    interruption = ask(world)
    viewer = api.as_key(make_user(octo, "vera", "viewer"))
    assert viewer.get(f"/interruptions/{interruption}").status_code == 200
    assert submit(viewer, interruption, "approve").status_code == 403
    in_prod = api.as_key(make_user(octo, "pat", "project-deployer", environments=[world["Prod"]]))
    assert submit(in_prod, interruption, "approve").status_code == 403
    in_dev = api.as_key(make_user(octo, "dan", "project-deployer", environments=[world["Dev"]]))
    assert submit(in_dev, interruption, "approve").status_code == 200
    assert submit(api.as_key(None), interruption, "approve").status_code == 401


def test_visibility_follows_scope_and_teams(octo, api, world):
    shop = ask(world)
    make_user(octo, "alice", "viewer", projects=[world["Shop"]])
    team = Team.get(Team.name == "alice team").id
    blog_for_alice = ask(world, project="Blog", responsible_teams=[team])
    blog_other = ask(world, project="Blog")
    alice = api.as_key(octo.key_for("alice"))
    listed = alice.get("/interruptions").json()
    assert {item["id"] for item in listed["items"]} == {shop, blog_for_alice}
    assert alice.get(f"/interruptions/{blog_other}").status_code == 403
    assert alice.get(f"/interruptions/{blog_for_alice}").status_code == 200
    nobody = api.as_key(make_user(octo, "nobody"))
    assert nobody.get("/interruptions").status_code == 403
    assert nobody.get(f"/interruptions/{shop}").status_code == 403
