"""A real ``octo-agent run`` process, listening and polling, driven by an appliance stand-in.

Every test runs against both modes (the ``agent`` fixture is parametrised): the stand-in dials
the listening agent, and the polling agent dials the stand-in's polling listener.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from octo_appliance.comms import CallFailed
from tests.child_process import alive, has_sleep, process_name

from .conftest import MISMATCH_VERSION, Agent, RunnerBuild
from .support import wait_for


def script_params(
    build: RunnerBuild,
    body: str,
    *,
    variables: list[dict[str, Any]] | None = None,
    exclusive: bool = True,
    task_id: str | None = None,
) -> dict[str, Any]:
    return {
        "task_id": task_id or f"tsk_{uuid.uuid4().hex[:12]}",
        "runner": build.ref,
        "command": "run-script",
        "arguments": {"syntax": "bash", "body": body},
        "variables": variables or [],
        "context": {"target": "test"},
        "exclusive": exclusive,
    }


def messages(events: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("message")) for e in events if e.get("type") == "log"]


def test_script_streams_events_and_returns_output_variables(
    agent: Agent, runner_build: RunnerBuild
) -> None:
    events: list[dict[str, Any]] = []
    body = 'echo "hello from #{Who}"\nset_octovariable Port 8080\necho done'
    params = script_params(
        runner_build, body, variables=[{"name": "Who", "value": "tests", "sensitive": False}]
    )

    result = agent.target.call("runner.run", params, events=events).result

    assert "hello from tests" in messages(events)
    assert {"type": "output-variable", "name": "Port", "value": "8080", "sensitive": False} in [
        {k: e.get(k) for k in ("type", "name", "value", "sensitive")} for e in events
    ]
    assert events[-1]["type"] == "result"
    assert result["exit_code"] == 0 and result["success"] is True
    assert result["canceled"] is False
    assert result["output_variables"] == [{"name": "Port", "value": "8080", "sensitive": False}]
    work_dir = Path(result["work_dir"])
    assert work_dir.parent == agent.home.work_dir
    assert work_dir.name == f"{params['task_id']}-1"


def test_failing_script_reports_its_exit_code(agent: Agent, runner_build: RunnerBuild) -> None:
    result = agent.target.call("runner.run", script_params(runner_build, "echo no >&2; exit 3"))

    assert result.result["exit_code"] == 3
    assert result.result["success"] is False


def test_runner_is_fetched_once_then_served_from_the_cache(
    agent: Agent, runner_build: RunnerBuild
) -> None:
    for _ in range(2):
        agent.target.call("runner.run", script_params(runner_build, "true"))

    assert agent.standin.fetches[runner_build.version] == 1
    cached = agent.home.runners_dir / f"octo-runner-{runner_build.version}.pyz"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == runner_build.sha256


def test_runner_with_the_wrong_hash_is_refused_and_not_cached(
    agent: Agent, runner_build: RunnerBuild
) -> None:
    params = script_params(runner_build, "echo must not run")
    params["runner"] = {"version": MISMATCH_VERSION, "sha256": "ab" * 32}

    with pytest.raises(CallFailed) as failed:
        agent.target.call("runner.run", params)

    assert failed.value.code == "runner_mismatch"
    assert runner_build.sha256 in failed.value.message and "ab" * 32 in failed.value.message
    assert not (agent.home.runners_dir / f"octo-runner-{MISMATCH_VERSION}.pyz").exists()
    assert list(agent.home.tmp_dir.iterdir()) == []
    assert not any(agent.home.work_dir.glob(f"{params['task_id']}-*"))


def test_cancel_kills_the_runner_and_the_script(agent: Agent, runner_build: RunnerBuild) -> None:
    started = threading.Event()
    script_pid: list[int] = []

    def on_event(event: dict[str, Any]) -> None:
        message = str(event.get("message", ""))
        if message.startswith("script pid "):
            script_pid.append(int(message.split()[-1]))
            started.set()

    body = 'echo "script pid $$"\nsleep 60\necho "not reached"'
    call = agent.target.submit("runner.run", script_params(runner_build, body), on_event=on_event)
    try:
        assert started.wait(30), "the script did not start"
        agent_process = psutil.Process(agent.process.pid)
        wait_for(lambda: has_sleep(agent_process), 20, "the script to start sleep")
        # the task's runner is the script's parent; the runner is the agent's child, or, once
        # the agent has started its fork server, that server's (which a cancel leaves alone)
        runner = psutil.Process(script_pid[0]).parent()
        assert runner is not None
        parent = runner.parent()
        assert parent is not None
        assert parent.pid == agent_process.pid or parent.ppid() == agent_process.pid
        tree = [runner, *runner.children(recursive=True)]
        assert any(p.pid == script_pid[0] for p in tree) and any(
            process_name(p) == "sleep" for p in tree
        )
    finally:  # also when an assertion failed: a sleeping task would hold the target mutex
        call.cancel()

    wait_for(lambda: not alive(runner), 20, "the runner to exit")
    wait_for(lambda: not any(alive(p) for p in tree), 20, "the script's processes to go")
    assert not [p for p in agent_process.children(recursive=True) if process_name(p) == "sleep"]


STAMP_SCRIPT = """\
set_octovariable start "$(date +%s%N)"
sleep 0.3
set_octovariable end "$(date +%s%N)"
"""


def test_exclusive_runs_on_one_target_do_not_overlap(
    agent: Agent, runner_build: RunnerBuild
) -> None:
    events: list[list[dict[str, Any]]] = [[], []]
    calls = [
        agent.target.submit(
            "runner.run", script_params(runner_build, STAMP_SCRIPT), events=events[i]
        )
        for i in range(2)
    ]
    results = [call.result(60).result for call in calls]

    stamps = sorted(
        ({v["name"]: int(v["value"]) for v in r["output_variables"]} for r in results),
        key=lambda s: s["start"],
    )
    assert stamps[1]["start"] >= stamps[0]["end"]
    waited = [
        e for e in events if "waiting for another task on this target to finish" in messages(e)
    ]
    assert len(waited) == 1


RENDEZVOUS_SCRIPT = """\
touch "#{Dir}/#{Me}"
for i in $(seq 400); do
  [ -e "#{Dir}/#{Other}" ] && exit 0
  sleep 0.05
done
echo "never saw #{Other}"
exit 1
"""


def test_non_exclusive_runs_overlap(
    agent: Agent, runner_build: RunnerBuild, tmp_path: Path
) -> None:
    def params(me: str, other: str) -> dict[str, Any]:
        variables = [
            {"name": "Dir", "value": str(tmp_path), "sensitive": False},
            {"name": "Me", "value": me, "sensitive": False},
            {"name": "Other", "value": other, "sensitive": False},
        ]
        return script_params(runner_build, RENDEZVOUS_SCRIPT, variables=variables, exclusive=False)

    calls = [
        agent.target.submit("runner.run", params("a", "b")),
        agent.target.submit("runner.run", params("b", "a")),
    ]

    # each script waits until the other one has started: both succeed only if they overlap
    assert [call.result(60).result["exit_code"] for call in calls] == [0, 0]


def test_sensitive_values_stay_out_of_the_agent_home_and_log(
    agent: Agent, runner_build: RunnerBuild
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    body = 'echo "substituted #{Secret}"\necho "helper $(get_octovariable Secret)"'
    events: list[dict[str, Any]] = []
    params = script_params(
        runner_build, body, variables=[{"name": "Secret", "value": secret, "sensitive": True}]
    )

    result = agent.target.call("runner.run", params, events=events).result

    assert result["success"] is True
    assert "substituted ********" in messages(events)
    assert "helper ********" in messages(events)
    assert agent.home.log_file.exists()
    for path in agent.home.root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in agent.process.stderr()


def test_package_cache_put_and_has(agent: Agent, runner_build: RunnerBuild, tmp_path: Path) -> None:
    package = tmp_path / "app.1.0.zip"
    package.write_bytes(os.urandom(300_000))
    sha = hashlib.sha256(package.read_bytes()).hexdigest()
    params = {"sha256": sha, "length": package.stat().st_size, "name": package.name}

    assert agent.target.call("cache.has", {"sha256": sha}).result == {
        "present": False,
        "length": None,
    }
    stored = agent.target.call("cache.put", params, upload=package).result
    again = agent.target.call("cache.put", params, upload=package).result

    assert stored["stored"] is True and again["stored"] is True
    assert (agent.home.cache_dir / sha).read_bytes() == package.read_bytes()
    assert agent.target.call("cache.has", {"sha256": sha}).result == {
        "present": True,
        "length": package.stat().st_size,
    }
    with pytest.raises(CallFailed) as wrong:
        agent.target.call("cache.put", {**params, "sha256": "0" * 64}, upload=package)
    assert wrong.value.code == "hash_mismatch"
    assert not (agent.home.cache_dir / ("0" * 64)).exists()


def test_files_fetch_serves_artifacts_and_nothing_outside_the_work_dir(
    agent: Agent, runner_build: RunnerBuild, tmp_path: Path
) -> None:
    body = (
        'echo "report body" > report.txt\n'
        "new_octoartifact report.txt\n"
        f"ln -s {agent.home.key_file} key-link\n"
    )
    params = script_params(runner_build, body)
    result = agent.target.call("runner.run", params).result
    [artifact] = result["artifacts"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    fetched = agent.target.call(
        "files.fetch",
        {"task_id": params["task_id"], "path": artifact["path"]},
        download_dir=downloads,
    )

    assert fetched.file_path is not None
    assert fetched.file_path.read_text() == "report body\n"
    for path in ("../../identity/key.pem", "key-link", str(agent.home.key_file)):
        with pytest.raises(CallFailed) as refused:
            agent.target.call("files.fetch", {"task_id": params["task_id"], "path": path})
        assert refused.value.code == "forbidden_path", path


def test_agent_info(agent: Agent, runner_build: RunnerBuild) -> None:
    agent.target.call("runner.run", script_params(runner_build, "true"))

    info = agent.target.call("agent.info", {}).result

    assert info["mode"] == agent.target.mode
    assert info["target_id"].startswith("tgt_")
    assert runner_build.version in info["runner_versions"]
    assert info["work_dir"] == str(agent.home.work_dir)


def test_bad_parameters_are_refused_with_a_hint(agent: Agent, runner_build: RunnerBuild) -> None:
    bad = script_params(runner_build, "true", task_id="../escape")

    with pytest.raises(CallFailed) as refused:
        agent.target.call("runner.run", bad)

    assert refused.value.code == "bad_request"
    assert refused.value.hint
