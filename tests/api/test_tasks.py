"""``/api/v1/tasks``: listing, details, cancel, the log and its live stream, and access."""

from __future__ import annotations

import json
import threading

import pytest

from octo_appliance.api import task_stream
from octo_appliance.db import Environment
from octo_appliance.db.tasks import ServerTask
from octo_appliance.engine.tasks.creation import create_task
from tests.api.helpers import client_as, events, make_user
from tests.engine.conftest import make_engine, tracker  # noqa: F401 - fixtures
from tests.engine.support import (
    DEMO,
    log_messages_until,
    sse_events,
    task_row,
    wait_finished,
    wait_until,
)

SECRET = "pa55-Word-Never-Shown"
MASK = "********"


@pytest.fixture
def engine(octo, make_engine):  # noqa: F811 - the imported fixture
    engine = make_engine()
    octo.appliance.task_engine = engine
    return engine


def stream(octo, task_id, key=None, **kwargs):
    headers = {"X-Api-Key": key or octo.admin_key, **kwargs.pop("headers", {})}
    return octo.client.stream(
        "GET", f"/api/v1/tasks/{task_id}/log/stream", headers=headers, **kwargs
    )


def watchdog(tracker, *gates):  # noqa: F811
    """Open the gates after a minute, so a broken stream fails instead of hanging the run."""
    timer = threading.Timer(60, lambda: [tracker.gate(name).set() for name in gates])
    timer.daemon = True
    timer.start()
    return timer


# ---------------------------------------------------------------- list and details


def test_list_newest_first_with_filters(octo, api, engine):
    ok = engine.enqueue(DEMO, "deploy web", {"lines": 1}, created_by_name="admin")
    wait_finished(ok)
    bad = engine.enqueue(DEMO, "deploy db", {"fail": "no disk"})
    wait_finished(bad)
    other = create_task(octo.appliance.vault, kind="other", description="old style")
    wait_finished(other)

    page = api.get("/tasks").json()
    assert page["total"] == 3
    assert [item["id"] for item in page["items"]] == [other, bad, ok]
    assert api.get("/tasks", params={"state": "failed"}).json()["total"] == 2
    assert [t["id"] for t in api.get("/tasks", params={"kind": DEMO}).json()["items"]] == [bad, ok]
    assert [t["id"] for t in api.get("/tasks", params={"name": "DEPLOY"}).json()["items"]] == [
        bad,
        ok,
    ]
    assert [t["id"] for t in api.get("/tasks", params={"skip": 1, "take": 1}).json()["items"]] == [
        bad
    ]
    assert api.get("/tasks", params={"state": "sleeping"}).status_code == 400
    item = page["items"][2]
    assert item["state"] == "success"
    assert item["created_by"] == {"id": None, "username": "admin"}
    assert item["duration_ms"] >= 0
    assert item["error"] is None


def test_task_details_with_target_results(octo, api, engine):
    targets = [
        {
            "id": "tgt_1",
            "name": "web-1",
            "outputs": {"Version": "2.0"},
            "sensitive_outputs": {"Token": "password"},
        },
        {"id": "tgt_2", "name": "web-2", "state": "failed", "exit_code": 7, "message": "boom"},
    ]
    task_id = engine.enqueue(
        DEMO, "script", {"targets": targets, "lines": 2}, {"password": SECRET}, timeout_seconds=600
    )
    wait_finished(task_id)
    detail = api.get(f"/tasks/{task_id}").json()
    assert detail["state"] == "failed"
    assert detail["error"] == "1 of 2 target(s) did not succeed"
    assert detail["timeout_seconds"] == 600
    assert detail["node"] == "node-1"
    assert detail["summary"] == {"targets": 2, "states": {"failed": 1, "success": 1}}
    assert detail["arguments"]["targets"][0]["name"] == "web-1"  # non-sensitive only
    web1, web2 = detail["targets"]
    assert (web1["target_name"], web1["state"], web1["exit_code"]) == ("web-1", "success", 0)
    assert web1["duration_ms"] >= 0
    assert web1["output_variables"] == [
        {"name": "Version", "value": "2.0", "sensitive": False},
        {"name": "Token", "value": None, "sensitive": True},
    ]
    assert (web2["state"], web2["exit_code"], web2["message"]) == ("failed", 7, "boom")
    assert SECRET not in json.dumps(detail)
    assert api.get("/tasks/task_000000000000").status_code == 404


def test_task_details_without_targets_for_polling(octo, api, engine):
    """``?targets=false``: the task's state without its per-target rows, so a client waiting
    on a task of 5,000 targets does not make the appliance read 5,000 rows per poll."""
    targets = [{"id": f"tgt_{i}", "name": f"web-{i}"} for i in range(3)]
    task_id = engine.enqueue(DEMO, "script", {"targets": targets, "lines": 1})
    wait_finished(task_id)
    brief = api.get(f"/tasks/{task_id}", params={"targets": "false"}).json()
    full = api.get(f"/tasks/{task_id}").json()
    assert brief["state"] == full["state"] == "success"
    assert brief["summary"] == full["summary"] == {"targets": 3, "states": {"success": 3}}
    assert brief["targets"] == []
    assert [t["target_name"] for t in full["targets"]] == ["web-0", "web-1", "web-2"]
    assert {k: v for k, v in brief.items() if k != "targets"} == {
        k: v for k, v in full.items() if k != "targets"
    }


# ---------------------------------------------------------------- the log


def test_log_pages_with_since(octo, api, engine):
    task_id = engine.enqueue(DEMO, "chatty", {"lines": 12})
    wait_finished(task_id)
    first = api.get(f"/tasks/{task_id}/log", params={"take": 5}).json()
    assert [line["seq"] for line in first["items"]] == [1, 2, 3, 4, 5]
    assert first["next_since"] == 5 and not first["finished"]
    assert first["state"] == "success"
    seen = first["items"]
    since = first["next_since"]
    while True:
        page = api.get(f"/tasks/{task_id}/log", params={"since": since, "take": 5}).json()
        seen += page["items"]
        since = page["next_since"]
        if page["finished"]:
            break
    assert [line["seq"] for line in seen] == list(range(1, page["total"] + 1))
    numbered = [line for line in seen if line["message"].startswith("line ")]
    assert [line["message"] for line in numbered] == [f"line {n}" for n in range(1, 13)]
    assert all(line["time"].endswith("Z") and line["level"] for line in seen)
    assert api.get(f"/tasks/{task_id}/log", params={"since": -1}).status_code == 400


def test_log_lines_carry_their_target(octo, api, engine):
    targets = [{"id": "tgt_1", "name": "web-1"}]
    task_id = engine.enqueue(DEMO, "t", {"lines": 1, "targets": targets})
    wait_finished(task_id)
    items = api.get(f"/tasks/{task_id}/log").json()["items"]
    line = next(item for item in items if item["message"] == "line 1")
    assert line["target"] == {"id": "tgt_1", "name": "web-1"}
    assert items[0]["target"] is None


def test_secrets_are_masked_in_every_output(octo, api, engine):
    targets = [{"id": "tgt_1", "name": "web-1", "sensitive_outputs": {"Out": "token"}}]
    task_id = engine.enqueue(
        DEMO,
        "echo",
        {"echo_secret": True, "targets": targets, "fail_with_secret": True},
        {"password": SECRET, "token": SECRET + "-out"},
    )
    wait_finished(task_id)
    log_text = api.get(f"/tasks/{task_id}/log").text
    detail_text = api.get(f"/tasks/{task_id}").text
    with stream(octo, task_id) as response:
        stream_text = response.read().decode()
    for text in (log_text, detail_text, stream_text):
        assert SECRET not in text
        assert MASK in text
    assert f"the password is {MASK}" in stream_text


# ---------------------------------------------------------------- cancel


def test_cancel_queued_executing_and_finished(octo, api, make_engine, tracker):  # noqa: F811
    engine = make_engine(cap=1)
    octo.appliance.task_engine = engine
    watchdog(tracker, "block")
    running = engine.enqueue(DEMO, "blocker", {"gate": "block"})
    wait_until(lambda: running in tracker.runs, "the blocker to start")
    queued = engine.enqueue(DEMO, "waiting", {"lines": 1})

    response = api.post(f"/tasks/{queued}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "canceled"
    assert response.json()["canceled_by"] == "admin"
    assert [e.action for e in events(resource_id=queued)] == ["cancel"]

    response = api.post(f"/tasks/{running}/cancel")
    assert response.status_code == 200
    assert response.json()["cancel_requested"] is True
    task = wait_finished(running)
    assert task.state == "canceled"
    assert tracker.cancelled == [running]
    assert queued not in tracker.runs

    conflict = api.post(f"/tasks/{running}/cancel")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"
    assert api.post("/tasks/task_000000000000/cancel").status_code == 404


# ---------------------------------------------------------------- access


def test_viewer_reads_but_cannot_cancel(octo, engine, tracker):  # noqa: F811
    viewer = client_as(octo, make_user(octo, "vera", "viewer"))
    deployer = client_as(octo, make_user(octo, "dora", "project-deployer"))
    watchdog(tracker, "hold")
    task_id = engine.enqueue(DEMO, "held", {"gate": "hold", "lines": 1})
    wait_until(lambda: task_id in tracker.runs, "the task to start")
    assert viewer.get("/tasks").json()["total"] == 1
    assert viewer.get(f"/tasks/{task_id}").status_code == 200
    assert viewer.get(f"/tasks/{task_id}/log").status_code == 200
    assert viewer.post(f"/tasks/{task_id}/cancel").status_code == 403
    assert task_row(task_id).cancel_requested is False
    assert deployer.post(f"/tasks/{task_id}/cancel").status_code == 200
    assert wait_finished(task_id).state == "canceled"


def test_tasks_are_scoped_by_environment(octo, api, engine):
    dev = Environment.create_new(name="Dev")
    prod = Environment.create_new(name="Prod")
    in_dev = engine.enqueue(DEMO, "dev", {}, environment_id=dev.id)
    in_prod = engine.enqueue(DEMO, "prod", {}, environment_id=prod.id)
    anywhere = engine.enqueue(DEMO, "everywhere", {})
    for task_id in (in_dev, in_prod, anywhere):
        wait_finished(task_id)
    dev_viewer = client_as(octo, make_user(octo, "devon", "viewer", environments=[dev.id]))
    listed = dev_viewer.get("/tasks").json()
    assert [item["id"] for item in listed["items"]] == [in_dev]
    assert dev_viewer.get(f"/tasks/{in_dev}/log").status_code == 200
    for hidden in (in_prod, anywhere):
        assert dev_viewer.get(f"/tasks/{hidden}").status_code == 403
        assert dev_viewer.get(f"/tasks/{hidden}/log").status_code == 403
        assert dev_viewer.get(f"/tasks/{hidden}/log/stream").status_code == 403
    assert api.get("/tasks").json()["total"] == 3
    nobody = client_as(octo, make_user(octo, "nobody"))
    assert nobody.get("/tasks").status_code == 403
    assert client_as(octo, None).get("/tasks").status_code == 401


# ---------------------------------------------------------------- the live stream


def test_stream_of_a_finished_task_sends_every_line_then_end(octo, engine):
    task_id = engine.enqueue(DEMO, "done", {"lines": 7})
    wait_finished(task_id)
    with stream(octo, task_id) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        received = [e for e in sse_events(response.iter_lines()) if "comment" not in e]
    logs = [e for e in received if e.get("event") == "log"]
    assert [int(e["id"]) for e in logs] == list(range(1, len(logs) + 1))
    assert [json.loads(e["data"])["seq"] for e in logs] == [int(e["id"]) for e in logs]
    assert "line 7" in [json.loads(e["data"])["message"] for e in logs]
    assert received[-1]["event"] == "end"
    assert json.loads(received[-1]["data"])["state"] == "success"


def test_stream_follows_a_running_task_live(octo, engine, tracker):  # noqa: F811
    watchdog(tracker, "live")
    task_id = engine.enqueue(DEMO, "live", {"lines": 3, "gate": "live", "after_gate_lines": 2})
    with stream(octo, task_id) as response:
        events_ = sse_events(response.iter_lines())
        seen = log_messages_until(events_, "line 3")
        # the lines arrived while the task still waits at its gate
        assert task_row(task_id).state == "executing"
        tracker.gate("live").set()
        last = None
        for event in events_:
            if event.get("event") == "log":
                seen.append(json.loads(event["data"])["message"])
            last = event
        assert last is not None and last["event"] == "end"
        assert json.loads(last["data"])["state"] == "success"
    assert seen[-3:] == ["after 1", "after 2", "The task succeeded."]
    assert seen.index("line 3") < seen.index("after 1")


def test_stream_resumes_after_last_event_id_or_since(octo, engine):
    task_id = engine.enqueue(DEMO, "resume", {"lines": 9})
    wait_finished(task_id)

    def first_id(**kwargs):
        with stream(octo, task_id, **kwargs) as response:
            ids = [int(e["id"]) for e in sse_events(response.iter_lines()) if "id" in e]
        return ids[0], ids[-1]

    first, last = first_id(headers={"Last-Event-ID": "5"})
    assert first == 6
    assert first_id(params={"since": 3})[0] == 4
    assert first_id(params={"since": 3}, headers={"Last-Event-ID": "8"})[0] == 9
    with stream(octo, task_id, headers={"Last-Event-ID": "not-a-number"}) as response:
        assert response.status_code == 400
    with stream(octo, task_id, headers={"Last-Event-ID": str(last)}) as response:
        received = list(sse_events(response.iter_lines()))
    assert received[0] == {"retry": "2000"}
    assert [e["event"] for e in received if "event" in e] == ["end"]


def test_stream_sends_keepalives_while_quiet(octo, engine, tracker, monkeypatch):  # noqa: F811
    monkeypatch.setattr(task_stream, "KEEPALIVE_SECONDS", 0.05)
    watchdog(tracker, "quiet")
    task_id = engine.enqueue(DEMO, "quiet", {"gate": "quiet"})
    with stream(octo, task_id) as response:
        events_ = sse_events(response.iter_lines())
        for event in events_:
            if event.get("comment") == "keepalive":
                break
        tracker.gate("quiet").set()
        assert [e for e in events_ if "event" in e][-1]["event"] == "end"


def test_stream_of_a_task_run_by_another_node(octo, make_engine, tracker):  # noqa: F811
    """No engine in this process: the stream reads what the other node stores."""
    other = make_engine(node="node-2")
    watchdog(tracker, "remote")
    task_id = other.enqueue(DEMO, "remote", {"lines": 2, "gate": "remote", "after_gate_lines": 1})
    wait_until(lambda: task_id in tracker.runs, "the task to start")
    assert getattr(octo.appliance, "task_engine", None) is None
    with stream(octo, task_id) as response:
        events_ = sse_events(response.iter_lines())
        for event in events_:
            if event.get("event") == "log" and json.loads(event["data"])["message"] == "line 2":
                break
        tracker.gate("remote").set()
        rest = [e for e in events_ if "event" in e]
    messages = [json.loads(e["data"])["message"] for e in rest if e["event"] == "log"]
    assert messages == ["after 1", "The task succeeded."]
    assert rest[-1]["event"] == "end"


def test_stream_of_a_task_canceled_while_queued_ends(octo, api):
    """Queued with no engine anywhere: a cancel still ends the follower's stream."""
    task_id = create_task(octo.appliance.vault, kind=DEMO, description="never claimed")
    result: dict[str, object] = {}

    def follow() -> None:
        with stream(octo, task_id) as response:
            result["events"] = list(sse_events(response.iter_lines()))

    follower = threading.Thread(target=follow)
    follower.start()
    assert api.post(f"/tasks/{task_id}/cancel").json()["state"] == "canceled"
    follower.join(60)
    assert not follower.is_alive()
    received = [e for e in result["events"] if "event" in e]
    assert json.loads(received[-2]["data"])["message"].startswith("The task was canceled by admin")
    assert json.loads(received[-1]["data"])["state"] == "canceled"
    assert ServerTask.get_by_id(task_id).state == "canceled"
