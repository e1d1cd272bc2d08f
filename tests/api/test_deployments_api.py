"""``/api/v1/deployments`` on SQLite and PostgreSQL: lifecycle progression, skip rules,
targets, queue time, the task it creates, reading and scoping; plus the lifecycle functions
the executor calls (automatic promotion). Successful deployments are written directly where a
test needs one: running them is the executor's part, tested in ``tests/engine``."""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime, timedelta

import pytest

from octo_appliance.db import AuditEvent, Deployment, Release, ServerTask
from octo_appliance.db.connection import write_transaction
from octo_appliance.engine import lifecycles
from octo_appliance.engine.tasks import TaskEngine
from tests.api.deploy_support import HeldEngine, held_engine
from tests.api.helpers import make_user
from tests.engine.support import wait_finished, wait_until

SCRIPT = {"syntax": "bash", "body": "echo hi"}
STEPS = [
    {"name": "Web", "type": "run-script", "roles": ["web"], "properties": SCRIPT},
    {"name": "Smoke", "type": "run-script", "roles": ["web"], "properties": SCRIPT},
    {
        "name": "Migrate",
        "type": "run-script",
        "roles": ["db"],
        "properties": SCRIPT,
        "required": True,
    },
]
PHASES = [
    {"name": "Development", "environments": ["Dev"]},
    {"name": "Testing", "environments": ["Test", "QA"], "minimum_environments": 1},
    {"name": "Production", "environments": ["Prod"]},
]


@pytest.fixture
def held(octo):  # type: ignore[no-untyped-def]
    with held_engine(octo) as engine:
        yield engine


@pytest.fixture
def world(api):  # type: ignore[no-untyped-def]
    ids = {}
    for name in ("Dev", "Test", "QA", "Prod", "Other"):
        ids[name] = api.post("/environments", json={"name": name}).json()["id"]
    for name, env in (("web-dev", "Dev"), ("db-dev", "Dev"), ("web-prod", "Prod")):
        role = name.split("-")[0]
        target = {"name": name, "environments": [env], "roles": [role]}
        ids[name] = api.post("/targets", json=target).json()["id"]
    api.post("/lifecycles", json={"name": "Main", "phases": PHASES})
    ids["Shop"] = api.post("/projects", json={"name": "Shop", "lifecycle": "Main"}).json()["id"]
    assert api.put("/projects/Shop/process", json={"steps": STEPS}).status_code == 200
    ids["release"] = api.post("/projects/Shop/releases", json={"version": "1.0.0"}).json()["id"]
    return ids


def deploy(api, release, environment, **options):  # type: ignore[no-untyped-def]
    return api.post(
        "/deployments", json={"release": release, "environment": environment, **options}
    )


def mark(deployment_id: str, state: str) -> None:
    """What the executor does when a deployment ends."""
    Deployment.update(state=state).where(Deployment.id == deployment_id).execute()


def test_lifecycle_progression(api, world, held):
    release = world["release"]
    early = deploy(api, release, "Prod")
    assert early.status_code == 409
    message = early.json()["error"]["message"]
    assert "phase 'Development'" in message and "Dev" in message
    assert deploy(api, release, "Test").status_code == 409
    outside = deploy(api, release, "Other")
    assert outside.status_code == 409
    assert "not in the lifecycle" in outside.json()["error"]["message"]

    first = deploy(api, release, "Dev")
    assert first.status_code == 201, first.text
    dev = first.json()
    assert dev["release"] == release
    assert dev["environment"] == world["Dev"]
    assert dev["state"] in ("queued", "executing")
    assert dev["id"].startswith("dep_")

    # queued or failed is not enough to move on
    assert deploy(api, release, "Test").status_code == 409
    mark(dev["id"], "failed")
    assert deploy(api, release, "Test").status_code == 409
    again = deploy(api, release, "Dev").json()
    mark(again["id"], "success")
    test = deploy(api, release, "Test")
    assert test.status_code == 201, test.text
    prod = deploy(api, release, "Prod")
    assert prod.status_code == 409
    assert "1 more environment(s) of: Test, QA" in prod.json()["error"]["message"]
    mark(test.json()["id"], "success")  # one of Test and QA is enough
    assert deploy(api, release, "Prod").status_code == 201
    assert deploy(api, release, "QA").status_code == 201  # an earlier phase stays open


def test_the_task(api, world, held):
    queue_time = datetime.now(UTC) + timedelta(hours=2)
    response = deploy(
        api,
        world["release"],
        "Dev",
        skip_steps=["smoke"],
        targets=["web-dev"],
        exclude_targets=[world["db-dev"]],
        guided_failure=True,
        force=True,
        queue_time=queue_time.isoformat(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    task = ServerTask.get_by_id(body["task_id"])
    assert task.kind == "deployment"
    assert task.description == "Deploy Shop 1.0.0 to Dev"
    assert (task.project_id, task.environment_id) == (world["Shop"], world["Dev"])
    expected_options = {
        "skip_steps": ["Smoke"],
        "targets": [world["web-dev"]],
        "exclude_targets": [world["db-dev"]],
        "guided_failure": True,
        "force": True,
    }
    not_before = queue_time.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    assert task.arguments == {
        "deployment_id": body["id"],
        "release_id": world["release"],
        "environment_id": world["Dev"],
        "project_id": world["Shop"],
        **expected_options,
        "not_before": not_before + "Z",
    }
    assert body["options"] == {**expected_options, "queue_time": not_before + "Z"}
    row = Deployment.get_by_id(body["id"])
    assert (row.task_id, row.created_by) == (task.id, "admin")
    event = AuditEvent.get(AuditEvent.resource_id == body["id"])
    assert event.action == "create" and event.resource_type == "deployment"
    assert event.resource_name == "Shop 1.0.0 to Dev"

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None, microsecond=0)
    naive = deploy(api, world["release"], "Dev", queue_time=tomorrow.isoformat())
    assert naive.json()["options"]["queue_time"] == tomorrow.isoformat() + ".000Z"  # UTC
    far = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    assert deploy(api, world["release"], "Dev", queue_time=far).status_code == 422
    assert (
        deploy(api, world["release"], "Dev", queue_time="9999-12-31T23:59:59-05:00").status_code
        == 422
    )


def test_skip_and_target_rules(api, world, held):
    release = world["release"]
    required = deploy(api, release, "Dev", skip_steps=["Migrate"])
    assert required.status_code == 422
    assert required.json()["error"]["details"] == [
        {"field": "skip_steps", "message": "step 'Migrate' is required and cannot be skipped"}
    ]
    unknown = deploy(api, release, "Dev", skip_steps=["Nope"])
    assert unknown.status_code == 422
    assert "no step named 'Nope'" in unknown.json()["error"]["message"]
    elsewhere = deploy(api, release, "Dev", targets=["web-prod"])
    assert elsewhere.status_code == 422
    assert elsewhere.json()["error"]["details"][0]["field"] == "targets"
    ghost = deploy(api, release, "Dev", exclude_targets=["ghost"])
    assert ghost.status_code == 422
    assert ghost.json()["error"]["details"][0]["field"] == "exclude_targets"
    assert (
        deploy(api, "rel_000000000000", "Dev").json()["error"]["details"][0]["field"] == "release"
    )
    assert deploy(api, release, "Nowhere").status_code == 422
    for bad in ({"release": release}, {"release": release, "environment": "Dev", "colour": 1}):
        assert api.post("/deployments", json=bad).status_code == 422
    assert not Deployment.select().exists()
    assert not ServerTask.select().exists()


def test_without_a_task_engine_it_is_503(api, world):
    refused = deploy(api, world["release"], "Dev")
    assert refused.status_code == 503
    assert not Deployment.select().exists()


def test_read_and_state_follow_the_task(api, world, held: HeldEngine):
    dev = deploy(api, world["release"], "Dev").json()
    wait_until(lambda: api.get(f"/deployments/{dev['id']}").json()["state"] == "executing", "run")
    held.release()
    wait_finished(dev["task_id"])
    got = api.get(f"/deployments/{dev['id']}").json()
    assert got["state"] == "success"  # from the task, before the row is written
    assert got["finished_at"] is not None
    assert got["release_version"] == "1.0.0"
    assert got["error"] is None
    # the task's success counts for the lifecycle too
    assert deploy(api, world["release"], "Test").status_code == 201
    assert api.get("/deployments/dep_000000000000").status_code == 404


def test_list_filters_and_scope(octo, api, world, held):
    mark(deploy(api, world["release"], "Dev").json()["id"], "success")
    deploy(api, world["release"], "Test")
    blog = api.post("/projects", json={"name": "Blog"}).json()["id"]
    blog_release = api.post("/projects/Blog/releases", json={}).json()["id"]
    deploy(api, blog_release, "Dev")

    everything = api.get("/deployments").json()
    assert everything["total"] == 3
    assert [d["project"] for d in everything["items"]] == [blog, world["Shop"], world["Shop"]]
    assert api.get("/deployments", params={"project": "Shop"}).json()["total"] == 2
    assert api.get("/deployments", params={"environment": "Dev"}).json()["total"] == 2
    assert api.get("/deployments", params={"release": blog_release}).json()["total"] == 1
    assert api.get("/deployments", params={"take": 1}).json()["items"][0]["project"] == blog
    assert api.get("/deployments", params={"project": "Nope"}).status_code == 404

    in_dev = api.as_key(make_user(octo, "dev", "viewer", environments=[world["Dev"]]))
    assert in_dev.get("/deployments").json()["total"] == 2
    shop_only = api.as_key(make_user(octo, "shop", "viewer", projects=[world["Shop"]]))
    listed = shop_only.get("/deployments").json()["items"]
    assert {d["project"] for d in listed} == {world["Shop"]}
    blog_deployment = everything["items"][0]["id"]
    assert shop_only.get(f"/deployments/{blog_deployment}").status_code == 403
    assert in_dev.get(f"/deployments/{blog_deployment}").status_code == 200
    nobody = api.as_key(make_user(octo, "nobody"))
    assert nobody.get("/deployments").status_code == 403


def test_deploy_permission_is_scoped(octo, api, world, held):
    release = world["release"]
    viewer = api.as_key(make_user(octo, "vera", "viewer"))
    assert deploy(viewer, release, "Dev").status_code == 403
    dev_only = api.as_key(make_user(octo, "dora", "project-deployer", environments=[world["Dev"]]))
    dev = deploy(dev_only, release, "Dev")
    assert dev.status_code == 201
    mark(dev.json()["id"], "success")
    assert deploy(dev_only, release, "Test").status_code == 403
    api.post("/projects", json={"name": "Blog"})
    blog_only = api.as_key(make_user(octo, "bob", "project-deployer", projects=["prj_nothing"]))
    assert deploy(blog_only, release, "Dev").status_code == 403
    assert deploy(api.as_key(None), release, "Dev").status_code == 401


def _release_with(project_id: str, version: str, phases: list[dict]) -> Release:
    return Release.create_new(project=project_id, version=version, lifecycle_snapshot=phases)


def test_automatic_promotion(api, world):
    ids = world
    phases = [
        {"name": "A", "environments": [ids["Dev"], ids["Test"]], "minimum_environments": 2},
        {"name": "B", "environments": [ids["QA"], ids["Prod"]], "automatic": True},
        {"name": "C", "environments": [ids["Other"]], "automatic": True},
    ]
    release = _release_with(ids["Shop"], "9.0.0", phases)

    def success(env: str) -> None:
        Deployment.create_new(
            release=release.id, project=ids["Shop"], environment=env, task_id="t", state="success"
        )

    success(ids["Dev"])
    assert lifecycles.next_automatic_environments(release.id, ids["Dev"]) == []  # 1 of 2
    success(ids["Test"])
    assert lifecycles.next_automatic_environments(release.id, ids["Test"]) == [
        ids["QA"],
        ids["Prod"],
    ]
    success(ids["Test"])  # a redeploy: the phase was complete already
    assert lifecycles.next_automatic_environments(release.id, ids["Test"]) == []
    success(ids["QA"])  # phase B needs both: nothing yet
    assert lifecycles.next_automatic_environments(release.id, ids["QA"]) == []
    Deployment.create_new(
        release=release.id, project=ids["Shop"], environment=ids["Other"], task_id="t"
    )
    success(ids["Prod"])
    assert lifecycles.next_automatic_environments(release.id, ids["Prod"]) == []  # started
    manual = _release_with(ids["Shop"], "9.0.1", [dict(p, automatic=False) for p in phases])
    assert lifecycles.next_automatic_environments(manual.id, ids["Dev"]) == []
    assert lifecycles.next_automatic_environments("rel_000000000000", ids["Dev"]) == []


def test_queue_deployment_writes_task_and_deployment_together(world, held):
    """Without a caller's transaction too: an engine claiming the task in between found no
    deployment row and failed it ("no longer exists")."""
    engine: TaskEngine = held.engine
    release = Release.get_by_id(world["release"])
    from octo_appliance.db import Environment

    seen_by_others: list[bool] = []

    def enqueue(*args, **kwargs):  # type: ignore[no-untyped-def]
        task_id = engine.enqueue(*args, **kwargs)
        with concurrent.futures.ThreadPoolExecutor(1) as other:  # another connection
            seen = other.submit(lambda: ServerTask.get_or_none(ServerTask.id == task_id))
            seen_by_others.append(seen.result() is not None)
        return task_id

    options = {"skip_steps": [], "targets": [], "exclude_targets": []}
    options.update(guided_failure=False, force=False)
    deployment = lifecycles.queue_deployment(
        enqueue, release, Environment.get_by_id(world["Dev"]), options
    )

    assert seen_by_others == [False]
    assert ServerTask.get_by_id(deployment.task_id).arguments["deployment_id"] == deployment.id


def test_queue_deployment_for_the_executor(octo, world, held):
    """What automatic promotion calls with the engine's own enqueue."""
    engine: TaskEngine = held.engine
    release = Release.get_by_id(world["release"])
    from octo_appliance.db import Environment

    dev = Environment.get_by_id(world["Dev"])
    options = {"skip_steps": [], "targets": [], "exclude_targets": [], "guided_failure": False}
    with write_transaction(octo.appliance.db):
        deployment = lifecycles.queue_deployment(
            engine.enqueue, release, dev, {**options, "force": False}, created_by="lifecycle"
        )
    task = ServerTask.get_by_id(deployment.task_id)
    assert task.arguments["deployment_id"] == deployment.id
    assert "not_before" not in task.arguments
    assert lifecycles.can_deploy(release, world["Dev"]) == (True, "")
    allowed, reason = lifecycles.can_deploy(release, world["Prod"])
    assert not allowed and "Development" in reason
