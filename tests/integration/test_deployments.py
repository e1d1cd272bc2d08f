"""Deployments end to end: an appliance process, five real agents (listening and polling, one
``octo-agent run`` process holding all five homes), everything through the REST API.

Targets (all in ``Dev``): ``web-1`` (listening) and ``web-2`` (polling) with roles web+roll,
``db-1`` (listening) with db+roll, ``roll-4`` (polling) and ``roll-5`` (listening) with roll.
The restart test kills the appliance, so it runs last.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fleet import Fleet, running_fleet, wait_until

AGENTS = [
    ("web-1", "listening", ("web", "roll")),
    ("web-2", "polling", ("web", "roll")),
    ("db-1", "listening", ("db", "roll")),
    ("roll-4", "polling", ("roll",)),
    ("roll-5", "listening", ("roll",)),
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("deploy"), environments=("Dev", "Prod")) as fleet:
        for name, mode, roles in AGENTS:
            fleet.register(name, mode, roles=roles)
        fleet.start_agents(list(fleet.agents.values()), together=True)
        fleet.wait_connected(fleet.agents.values())
        api = fleet.api()
        lifecycle = api.post(
            "/api/v1/lifecycles",
            json={
                "name": "Dev then Prod",
                "phases": [
                    {"name": "Dev", "environments": ["Dev"]},
                    {"name": "Prod", "environments": ["Prod"]},
                ],
            },
        )
        assert lifecycle.status_code == 201, lifecycle.text
        yield fleet


# -- helpers -----------------------------------------------------------------------------------


def call(fleet: Fleet, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = fleet.api().request(method, "/api/v1" + path, **kwargs)
    assert response.status_code == status, f"{method} {path}: {response.text}"
    return response.json() if response.content else None


def project(
    fleet: Fleet,
    steps: list[dict[str, Any]],
    variables: list[dict[str, Any]] | None = None,
) -> str:
    name = f"p-{secrets.token_hex(4)}"
    created = call(
        fleet, "POST", "/projects", 201, json={"name": name, "lifecycle": "Dev then Prod"}
    )
    call(fleet, "PUT", f"/projects/{created['id']}/process", json={"steps": steps})
    if variables:
        call(fleet, "PUT", f"/projects/{created['id']}/variables", json={"variables": variables})
    return str(created["id"])


def release(fleet: Fleet, project_id: str) -> str:
    return str(call(fleet, "POST", f"/projects/{project_id}/releases", 201, json={})["id"])


def deploy(fleet: Fleet, release_id: str, environment: str = "Dev", **options: Any) -> Any:
    body = {"release": release_id, "environment": environment, **options}
    return call(fleet, "POST", "/deployments", 201, json=body)


def script(name: str, body: str, roles: list[str], **fields: Any) -> dict[str, Any]:
    properties = {"syntax": "bash", "body": body}
    return {"name": name, "type": "run-script", "roles": roles, "properties": properties, **fields}


def pending_interruption(fleet: Fleet, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        items = call(fleet, "GET", "/interruptions", params={"pending": "true"})["items"]
        return next((i for i in items if i["task_id"] == task_id), None)

    return dict(wait_until(find, timeout, f"an interruption of {task_id}", every=0.2))


def submit(fleet: Fleet, interruption_id: str, result: str, notes: str = "") -> Any:
    body = {"result": result, "notes": notes}
    return call(fleet, "POST", f"/interruptions/{interruption_id}/submit", json=body)


def steps(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in task["summary"]["steps"]}


def step_targets(task: dict[str, Any], step: str) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in steps(task)[step]["targets"]}


def log_text(fleet: Fleet, task_id: str) -> str:
    return "\n".join(line["message"] for line in fleet.log(task_id))


# -- acceptance ----------------------------------------------------------------------------------


def test_three_steps_with_approval_and_lifecycle(fleet: Fleet) -> None:
    secret = "s3cret-" + secrets.token_hex(8)
    project_id = project(
        fleet,
        [
            script(
                "Web",
                'echo "web on #{Octo.Machine.Name} in #{Octo.Environment.Name}, key #{ApiKey}"\n'
                'set_octovariable Url "http://#{Octo.Machine.Name}:#{Port}"\n'
                'set_octovariable Secret "#{ApiKey}" -sensitive',
                ["web"],
            ),
            {
                "name": "Approve",
                "type": "manual-intervention",
                "properties": {"instructions": "Check #{Octo.Environment.Name}"},
            },
            script(
                "Db",
                'echo "db sees #{Octo.Action[Web].Output.Url} and '
                '#{Octo.Action[Web].Output[web-1].Url}; secret #{Octo.Action[Web].Output.Secret}"',
                ["db"],
            ),
        ],
        [
            {"name": "Port", "value": "8080"},
            {"name": "Port", "value": "9090", "scope": {"targets": ["web-2"]}},
            {"name": "ApiKey", "value": secret, "sensitive": True},
        ],
    )
    release_id = release(fleet, project_id)

    deployment = deploy(fleet, release_id)
    interruption = pending_interruption(fleet, deployment["task_id"])
    refused = fleet.api().post(
        "/api/v1/deployments", json={"release": release_id, "environment": "Prod"}
    )
    assert refused.status_code == 409, refused.text
    assert "Dev" in refused.json()["error"]["message"]
    assert interruption["kind"] == "manual-intervention"
    assert interruption["instructions"] == "Check Dev"
    submit(fleet, interruption["id"], "approve", "looks good")
    task = fleet.wait_task(deployment["task_id"], timeout=90)

    assert task["state"] == "success", task["error"]
    assert call(fleet, "GET", f"/deployments/{deployment['id']}")["state"] == "success"
    web = step_targets(task, "Web")
    assert set(web) == {"web-1", "web-2"}
    assert all(t["state"] == "success" and t["duration_ms"] is not None for t in web.values())
    assert set(step_targets(task, "Db")) == {"db-1"}
    assert [s["state"] for s in task["summary"]["steps"]] == ["success"] * 3
    assert {t["target_name"]: t["state"] for t in task["targets"]} == {
        "web-1": "success",
        "web-2": "success",
        "db-1": "success",
    }
    urls = {
        t["target_name"]: {v["name"]: v["value"] for v in t["output_variables"]}
        for t in task["targets"]
    }
    assert urls["web-1"]["Octo.Action[Web].Output.Url"] == "http://web-1:8080"
    assert urls["web-2"]["Octo.Action[Web].Output.Url"] == "http://web-2:9090"  # target scope
    assert urls["web-2"]["Octo.Action[Web].Output.Secret"] is None  # sensitive: not shown
    db_log = "\n".join(fleet.log_of(task["id"], "db-1"))
    seen = re.search(r"db sees (\S+) and http://web-1:8080; secret \*{8}", db_log)
    assert seen is not None, db_log
    assert seen[1] in ("http://web-1:8080", "http://web-2:9090")  # the last web to finish
    assert "key ********" in "\n".join(fleet.log_of(task["id"], "web-1"))
    assert "answered 'approve' (looks good)" in log_text(fleet, task["id"])

    allowed = deploy(fleet, release_id, "Prod")
    submit(fleet, pending_interruption(fleet, allowed["task_id"])["id"], "approve")
    in_prod = fleet.wait_task(allowed["task_id"])
    assert in_prod["state"] == "success", in_prod["error"]
    # Prod has no targets: the script steps are skipped, saying why
    assert steps(in_prod)["Web"]["state"] == "skipped"
    assert "no target in this deployment has its roles" in steps(in_prod)["Web"]["reason"]

    # sensitive values appear in no API output: task, log, deployments, interruptions, release
    responses = [
        fleet.api().get(f"/api/v1/tasks/{task['id']}"),
        fleet.api().get(f"/api/v1/tasks/{task['id']}/log", params={"take": 5000}),
        fleet.api().get(f"/api/v1/deployments/{deployment['id']}"),
        fleet.api().get("/api/v1/deployments"),
        fleet.api().get(f"/api/v1/interruptions/{interruption['id']}"),
        fleet.api().get(f"/api/v1/releases/{release_id}"),
        fleet.api().get("/api/v1/tasks"),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
        assert secret not in response.text, response.url


def test_rolling_window_of_two_on_five_targets(fleet: Fleet) -> None:
    stamps = fleet.root / f"stamps-{secrets.token_hex(3)}"
    stamps.mkdir()
    body = (
        f'd="{stamps}"\n'
        'date +%s.%N > "$d/#{Octo.Machine.Name}.start"\n'
        "sleep 1\n"
        'date +%s.%N > "$d/#{Octo.Machine.Name}.end"\n'
    )
    project_id = project(fleet, [script("Roll", body, ["roll"], window=2)])

    task = fleet.wait_task(deploy(fleet, release(fleet, project_id))["task_id"], timeout=90)

    assert task["state"] == "success", task["error"]
    names = [name for name, _, _ in AGENTS]
    assert set(step_targets(task, "Roll")) == set(names)
    spans = [
        (float((stamps / f"{n}.start").read_text()), float((stamps / f"{n}.end").read_text()))
        for n in names
    ]
    # the most targets running at one instant, from the targets' own clocks
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = highest = 0
    for _, change in events:
        running += change
        highest = max(highest, running)
    assert highest == 2


@pytest.mark.parametrize("answer", ["retry", "exclude-target", "abort"])
def test_guided_failure(fleet: Fleet, answer: str) -> None:
    markers = fleet.root / f"markers-{secrets.token_hex(3)}"
    markers.mkdir()
    (markers / "web-1").touch()
    done = fleet.root / f"done-{secrets.token_hex(3)}"
    done.mkdir()
    check = f'[ -f "{markers}/#{{Octo.Machine.Name}}" ] || {{ echo "no marker"; exit 4; }}'
    after = f'touch "{done}/#{{Octo.Machine.Name}}"'
    project_id = project(fleet, [script("Check", check, ["web"]), script("After", after, ["web"])])

    deployment = deploy(fleet, release(fleet, project_id), guided_failure=True)
    interruption = pending_interruption(fleet, deployment["task_id"])
    assert interruption["kind"] == "guided-failure"
    assert interruption["target_name"] == "web-2" and interruption["step_name"] == "Check"
    assert interruption["options"] == ["retry", "skip", "exclude-target", "abort"]
    if answer == "retry":
        (markers / "web-2").touch()
    submit(fleet, interruption["id"], answer)
    task = fleet.wait_task(deployment["task_id"], timeout=90)

    check_states = {n: t["state"] for n, t in step_targets(task, "Check").items()}
    finished = sorted(p.name for p in done.iterdir())
    if answer == "retry":
        assert task["state"] == "success", task["error"]
        assert check_states == {"web-1": "success", "web-2": "success"}
        assert step_targets(task, "Check")["web-2"]["attempts"] == 2
        assert finished == ["web-1", "web-2"]
    elif answer == "exclude-target":
        assert task["state"] == "success", task["error"]
        assert check_states == {"web-1": "success", "web-2": "excluded"}
        assert set(step_targets(task, "After")) == {"web-1"}
        assert finished == ["web-1"]
        overall = {t["target_name"]: t["state"] for t in task["targets"]}
        assert overall == {"web-1": "success", "web-2": "skipped"}
    else:
        assert task["state"] == "failed"
        assert "aborted by admin after step 'Check' failed on web-2" in task["error"]
        assert finished == []
        deployment_row = call(fleet, "GET", f"/deployments/{deployment['id']}")
        assert deployment_row["state"] == "failed"


def test_a_release_is_immutable(fleet: Fleet) -> None:
    project_id = project(
        fleet,
        [script("Say", 'echo "says #{Word} v1"', ["db"])],
        [{"name": "Word", "value": "before"}],
    )
    release_id = release(fleet, project_id)
    call(
        fleet,
        "PUT",
        f"/projects/{project_id}/process",
        json={"steps": [script("Say", 'echo "says #{Word} v2"', ["db"])]},
    )
    call(
        fleet,
        "PUT",
        f"/projects/{project_id}/variables",
        json={"variables": [{"name": "Word", "value": "after"}]},
    )

    task = fleet.wait_task(deploy(fleet, release_id)["task_id"])

    assert task["state"] == "success", task["error"]
    db_log = "\n".join(fleet.log_of(task["id"], "db-1"))
    assert "says before v1" in db_log and "after" not in db_log and "v2" not in db_log


def test_restart_fails_the_deployment_and_it_can_be_redeployed(fleet: Fleet) -> None:
    """Runs last: it kills the appliance."""
    stop = fleet.root / f"stop-{secrets.token_hex(3)}"
    started = fleet.root / f"started-{secrets.token_hex(3)}"
    body = (
        f'touch "{started}"\n'
        f'for i in $(seq 1 600); do [ -f "{stop}" ] && break; sleep 0.1; done\n'
        'echo "finished on #{Octo.Machine.Name}"'
    )
    project_id = project(fleet, [script("Long", body, ["db"])])
    release_id = release(fleet, project_id)
    deployment = deploy(fleet, release_id)
    wait_until(started.exists, 60, "the long step to start")
    tasks_before = {t["id"] for t in call(fleet, "GET", "/tasks", params={"take": 500})["items"]}

    fleet.stop_appliance(signal.SIGKILL)
    stop.touch()  # the script on the agent may still run; let it end
    fleet.start_appliance(same_ports=True)
    fleet.wait_connected(fleet.agents.values())

    task = fleet.task(deployment["task_id"])
    assert task["state"] == "failed"
    assert "the appliance stopped while this task was running" in task["error"]
    failed = call(fleet, "GET", f"/deployments/{deployment['id']}")
    assert failed["state"] == "failed"
    tasks_after = call(fleet, "GET", "/tasks", params={"take": 500})["items"]
    assert {t["id"] for t in tasks_after} == tasks_before  # nothing was queued again
    assert not [t for t in tasks_after if t["state"] in ("queued", "executing")]

    again = deploy(fleet, release_id)
    redeployed = fleet.wait_task(again["task_id"], timeout=90)
    assert redeployed["state"] == "success", redeployed["error"]
    assert "finished on db-1" in "\n".join(fleet.log_of(redeployed["id"], "db-1"))
    assert json.dumps(redeployed["summary"]["steps"][0]["state"]) == '"success"'
    assert datetime.datetime.fromisoformat(redeployed["finished_at"].rstrip("Z"))
