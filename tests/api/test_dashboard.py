"""``GET /api/v1/dashboard`` on SQLite and PostgreSQL: the latest deployment per project and
environment, its state, the caller's scope, and a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta

from octo_appliance.db import Deployment, Release, ServerTask
from octo_appliance.db.base import utcnow
from tests.api.helpers import make_user, record_statements


def seed(api):  # type: ignore[no-untyped-def]
    ids = {}
    for name, order in (("Prod", 2), ("Dev", 1)):
        body = {"name": name, "sort_order": order}
        ids[name] = api.post("/environments", json=body).json()["id"]
    for name in ("Shop", "Blog", "Idle"):
        ids[name] = api.post("/projects", json={"name": name}).json()["id"]
    return ids


def deployment(project, environment, version, state, minutes_ago, task_state=None):  # type: ignore[no-untyped-def]
    release = Release.get_or_none(Release.project == project, Release.version == version)
    if release is None:
        release = Release.create_new(project=project, version=version)
    task_id = "tsk_missing00000"
    if task_state is not None:
        task_id = ServerTask.create_new(kind="deployment", state=task_state).id
    moment = utcnow() - timedelta(minutes=minutes_ago)
    return Deployment.create_new(
        release=release.id,
        project=project,
        environment=environment,
        task_id=task_id,
        state=state,
        created_at=moment,
        finished_at=moment if state in ("success", "failed") else None,
    )


def test_latest_per_cell(api):
    ids = seed(api)
    deployment(ids["Shop"], ids["Dev"], "1.0.0", "success", 50)
    latest_dev = deployment(ids["Shop"], ids["Dev"], "1.1.0", "failed", 40)
    latest_prod = deployment(ids["Shop"], ids["Prod"], "1.0.0", "success", 30)
    running = deployment(ids["Blog"], ids["Dev"], "0.0.1", "queued", 5, task_state="executing")

    board = api.get("/dashboard").json()
    assert [p["name"] for p in board["projects"]] == ["Blog", "Idle", "Shop"]
    assert board["environments"] == [
        {"id": ids["Dev"], "name": "Dev", "sort_order": 1},
        {"id": ids["Prod"], "name": "Prod", "sort_order": 2},
    ]
    cells = {(i["project_id"], i["environment_id"]): i for i in board["items"]}
    assert len(cells) == 3
    dev = cells[(ids["Shop"], ids["Dev"])]
    assert dev["deployment_id"] == latest_dev.id
    assert (dev["release_version"], dev["state"]) == ("1.1.0", "failed")
    assert dev["release_id"] == Release.get(Release.version == "1.1.0").id
    assert dev["finished_at"] is not None
    assert cells[(ids["Shop"], ids["Prod"])]["deployment_id"] == latest_prod.id
    blog = cells[(ids["Blog"], ids["Dev"])]
    assert (blog["deployment_id"], blog["state"]) == (running.id, "executing")  # from the task
    assert blog["finished_at"] is None


def test_scoped_to_what_the_caller_may_view(octo, api):
    ids = seed(api)
    deployment(ids["Shop"], ids["Dev"], "1.0.0", "success", 10)
    deployment(ids["Shop"], ids["Prod"], "1.0.0", "success", 5)
    deployment(ids["Blog"], ids["Dev"], "1.0.0", "success", 5)
    dev_shop = api.as_key(
        make_user(octo, "dora", "viewer", environments=[ids["Dev"]], projects=[ids["Shop"]])
    )
    board = dev_shop.get("/dashboard").json()
    assert [p["id"] for p in board["projects"]] == [ids["Shop"]]
    assert [e["id"] for e in board["environments"]] == [ids["Dev"]]
    assert [(i["project_id"], i["environment_id"]) for i in board["items"]] == [
        (ids["Shop"], ids["Dev"])
    ]
    assert api.as_key(make_user(octo, "nobody")).get("/dashboard").status_code == 403
    assert api.as_key(None).get("/dashboard").status_code == 401


def test_query_count_does_not_grow_with_deployments(octo, api, monkeypatch):
    ids = seed(api)
    for minutes in range(30):
        for project in ("Shop", "Blog", "Idle"):
            for env in ("Dev", "Prod"):
                deployment(ids[project], ids[env], f"1.0.{minutes}", "success", minutes)
    api.get("/dashboard")  # warm the principal cache
    statements = record_statements(octo, monkeypatch)
    board = api.get("/dashboard").json()
    assert len(board["items"]) == 6
    assert {i["release_version"] for i in board["items"]} == {"1.0.0"}
    assert len(statements) == 3, statements  # projects, environments, latest deployments


def test_a_page_of_projects_holds_only_their_cells(api):  # type: ignore[no-untyped-def]
    ids = seed(api)
    for project in ("Shop", "Blog", "Idle"):
        deployment(ids[project], ids["Dev"], "1.0.0", "success", 10)
    page = api.get("/dashboard?take=1&skip=1").json()
    assert page["total"] == 3
    assert [p["name"] for p in page["projects"]] == ["Idle"]
    assert [i["project_id"] for i in page["items"]] == [ids["Idle"]]
    named = api.get("/dashboard?name=sho").json()
    assert (named["total"], [p["name"] for p in named["projects"]]) == (1, ["Shop"])
    assert [i["project_id"] for i in named["items"]] == [ids["Shop"]]
    assert api.get("/dashboard?take=0").status_code == 400
