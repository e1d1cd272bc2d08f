"""The deployment task kind in-process, on the built-in worker: real runner processes, real
database rows (created through the models), a real task engine in its own thread.

Agents are covered end to end in tests/integration/test_deployments.py; here the steps run
``on the appliance`` so the executor's rules (variables, validation before running, output
variables, manual intervention, guided failure, conditions, the worker's settings) are
checked quickly.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pytest

from octo_appliance.agent import quiet
from octo_appliance.db import (
    Deployment,
    Environment,
    Interruption,
    ServerTask,
    TaskTargetResult,
)
from octo_appliance.engine.deployments import (
    KIND,
    reconcile,
)
from octo_appliance.transports.base import RunnerCommand
from octo_appliance.transports.local import WORKER
from tests.engine.deploy_rig import Rig, script
from tests.engine.support import wait_finished, wait_until


def steps_of(task: ServerTask) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in task.summary["steps"]}


def test_variables_outputs_and_masking(rig: Rig) -> None:
    secret = "pw-" + secrets.token_hex(8)
    release = rig.release(
        [
            script(
                "Build",
                'echo "building #{Octo.Project.Name} #{Octopus.Release.Number} for #{Greeting}"\n'
                'echo "the password is #{Password}"\n'
                'set_octovariable Port "8#{Env.Suffix}"\n'
                'set_octovariable Token "$(get_octovariable Password)" -sensitive\n',
            ),
            script(
                "Use",
                'echo "port=#{Octo.Action[Build].Output.Port} step=#{Octo.Step.Name}"\n'
                'echo "token=#{Octopus.Action[Build].Output.Token}"',
            ),
        ],
        [
            {"name": "Greeting", "value": "#{Env.Name | ToUpper}", "scope": {}},
            {"name": "Env.Name", "value": "dev", "scope": {"environments": [rig.environment.id]}},
            {"name": "Env.Name", "value": "other", "scope": {}},
            {"name": "Env.Suffix", "value": "080", "scope": {"steps": ["Build"]}},
            {"name": "Password", "value": secret, "sensitive": True, "scope": {}},
        ],
    )

    deployment = rig.deploy(release)
    task = wait_finished(deployment.task_id, timeout=60)

    log = "\n".join(rig.log(task.id))
    assert task.state == "success", log
    assert f"building Shop {release.version} for DEV" in log
    assert "port=8080 step=Use" in log
    assert "the password is ********" in log and "token=********" in log
    assert secret not in log and secret not in task.error and secret not in json.dumps(task.summary)
    steps = steps_of(task)
    assert [s["state"] for s in steps.values()] == ["success", "success"]
    build = steps["Build"]["targets"][0]
    assert build["name"] == WORKER.name and build["state"] == "success"
    assert build["attempts"] == 1 and build["duration_ms"] is not None
    row = TaskTargetResult.get(TaskTargetResult.task == task.id)
    outputs = {v["name"]: v["value"] for v in row.output_variables}
    assert outputs == {
        "Octo.Action[Build].Output.Port": "8080",
        "Octo.Action[Build].Output.Token": None,
    }
    assert Deployment.get_by_id(deployment.id).state == "success"


def test_problems_are_reported_before_anything_runs(rig: Rig, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    release = rig.release(
        [
            script("First", f"touch {marker}"),
            script("Second", "echo #{Missing} #{Name}"),
            script("Looping", "echo #{Loop1}"),
            script("Third", "echo #{Octo.Action[Later].Output.X}"),
            {"name": "Later", "type": "no-such-type", "properties": {}},
            script("Bad", "echo", condition={"variable": "#{Undefined}"}),
        ],
        [
            {"name": "Loop1", "value": "#{Loop2}", "scope": {}},
            {"name": "Loop2", "value": "#{Loop1}", "scope": {}},
        ],
    )

    task = wait_finished(rig.deploy(release).task_id)

    assert task.state == "failed"
    assert task.error.startswith("the deployment was not started, 5 problem(s)")
    assert (
        "step 'Second' on the appliance: in body: unresolved variable reference(s): Missing, Name"
        in task.error
    )
    loop = "variable reference loop: Loop1 -> Loop2 -> Loop1"
    assert f"step 'Looping' on the appliance: in body: {loop}" in task.error
    assert (
        "step 'Third' on the appliance: in body: unresolved variable reference(s): "
        "Octo.Action[Later]" in (task.error)
    )
    assert "step type 'no-such-type' is not loaded" in task.error
    assert "step 'Bad': run condition: unresolved variable reference(s): Undefined" in task.error
    assert not marker.exists()
    assert Deployment.get(Deployment.task_id == task.id).state == "failed"


@pytest.mark.parametrize(("answer", "state"), [("approve", "success"), ("reject", "failed")])
def test_manual_intervention(rig: Rig, tmp_path: Path, answer: str, state: str) -> None:
    after = tmp_path / "after"
    release = rig.release(
        [
            {
                "name": "Approve",
                "type": "manual-intervention",
                "properties": {"instructions": "Check #{Octo.Environment.Name}"},
            },
            script("After", f"touch {after}"),
        ]
    )
    deployment = rig.deploy(release)

    row = rig.answer(deployment.task_id, answer, kind="manual-intervention")
    task = wait_finished(deployment.task_id)

    assert row.instructions == "Check Dev" and row.options == ["approve", "reject"]
    assert (
        row.deployment is not None
        and row.deployment.id == deployment.id
        and row.environment_id == rig.environment.id
    )
    assert task.state == state
    assert after.exists() is (answer == "approve")
    log = "\n".join(rig.log(task.id))
    assert f"alice answered '{answer}'" in log
    if answer == "reject":
        assert "Approve was rejected by alice" in task.error
        assert steps_of(task)["After"]["state"] == "skipped"


GUIDED = [
    pytest.param("retry", "success", "success", id="retry"),
    pytest.param("skip", "success", "skipped", id="skip"),
    pytest.param("abort", "failed", "failed", id="abort"),
]


@pytest.mark.parametrize(("answer", "task_state", "target_state"), GUIDED)
def test_guided_failure(
    rig: Rig, tmp_path: Path, answer: str, task_state: str, target_state: str
) -> None:
    marker = tmp_path / "fixed"
    done = tmp_path / "done"
    release = rig.release(
        [
            script("Flaky", f'[ -f {marker} ] || {{ echo "not fixed yet"; exit 3; }}'),
            script("Next", f"touch {done}"),
        ]
    )
    deployment = rig.deploy(release, guided_failure=True)

    def asking() -> bool:
        query = Interruption.select().where(Interruption.task_id == deployment.task_id)
        return bool(query.exists())

    wait_until(asking, "the guided-failure question", timeout=90)
    marker.touch()  # the cause is fixed after the first failure, before the answer
    row = rig.answer(deployment.task_id, answer, kind="guided-failure")
    task = wait_finished(deployment.task_id, timeout=90)
    assert "not fixed yet" in "\n".join(rig.log(task.id))

    assert row.options == ["retry", "skip", "exclude-target", "abort"]
    assert row.target_name == WORKER.name and row.step_name == "Flaky"
    assert task.state == task_state, task.error
    assert steps_of(task)["Flaky"]["targets"][0]["state"] == target_state
    assert done.exists() is (answer != "abort")
    if answer == "abort":
        assert "aborted by alice after step 'Flaky' failed" in task.error
    if answer == "retry":
        assert steps_of(task)["Flaky"]["targets"][0]["attempts"] == 2


def test_retries_timeout_and_conditions(rig: Rig, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    release = rig.release(
        [
            script(
                "ThirdTime",
                f'echo x >> {counter}; [ "$(wc -l < {counter})" -ge 3 ] || exit 1',
                retries=2,
            ),
            script("Slow", "sleep 30", timeout=1),
            script("OnlyOnSuccess", "echo should-not-run"),
            script("OnFailure", "echo cleanup-ran", condition="failure"),
            script("Always", "echo always-ran", condition="always"),
            script("Gated", "echo gated-ran", condition={"variable": "#{RunGated}"}),
            script("GatedOff", "echo gated-off-ran", condition="variable:#{RunOff}"),
        ],
        [
            {"name": "RunGated", "value": "True", "scope": {}},
            {"name": "RunOff", "value": "false", "scope": {}},
        ],
    )

    task = wait_finished(rig.deploy(release).task_id, timeout=60)

    log = "\n".join(rig.log(task.id))
    assert task.state == "failed"
    steps = steps_of(task)
    assert steps["ThirdTime"]["state"] == "success"
    assert steps["ThirdTime"]["targets"][0]["attempts"] == 3
    assert steps["Slow"]["state"] == "failed"
    assert steps["Slow"]["targets"][0]["state"] == "timed_out"
    assert "timed out after 1 s" in steps["Slow"]["targets"][0]["message"]
    assert [steps[n]["state"] for n in ("OnlyOnSuccess", "OnFailure", "Always", "Gated")] == [
        "skipped",
        "success",
        "success",
        "success",
    ]
    assert steps["GatedOff"]["state"] == "skipped"
    assert "cleanup-ran" in log and "always-ran" in log and "gated-ran" in log
    assert "should-not-run" not in log and "gated-off-ran" not in log
    assert "step 'Slow' failed" in task.error


def test_disabled_worker_fails_with_a_clear_message(rig: Rig) -> None:
    rig.local.enabled = False
    task = wait_finished(rig.deploy(rig.release([script("Cloud", "echo hi")])).task_id)
    assert task.state == "failed"
    assert "the built-in worker is disabled on this appliance (setting builtin_worker" in (
        task.error + "\n".join(rig.log(task.id))
    )


def test_closing_the_worker_ends_its_fork_server(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the appliance's stop does (``Services.stop`` closes every transport)."""
    monkeypatch.setattr(quiet, "IDLE_SHARE", 0.0)  # the machine is shared: any idle will do
    task = wait_finished(rig.deploy(rig.release([script("Say", "echo hi")])).task_id)
    assert task.state == "success", task.error
    wait_until(lambda: rig.local.host.fork_pool.server is not None, "the worker's fork server")
    server = rig.local.host.fork_pool.server
    assert server is not None

    rig.in_engine(rig.local.close())

    assert server.gone and server.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)  # ended and reaped
    assert rig.local.host.fork_pool.closed


def test_restart_mirrors_the_task_onto_the_deployment(rig: Rig) -> None:
    """A deployment whose task ended without its handler (canceled while queued, failed at a
    restart) takes the task's state; its pending interruptions are closed."""
    release = rig.release([script("A", "true")])
    deployment = Deployment.create_new(
        release=release, project=rig.project, environment=rig.environment, task_id="task_gone"
    )
    task = ServerTask.create(id="task_gone", kind=KIND, state="failed", error="restart")
    Interruption.create_new(task_id=task.id, kind="guided-failure", title="t", options=["abort"])

    assert reconcile() == [deployment.id]

    assert Deployment.get_by_id(deployment.id).state == "failed"
    assert Interruption.get(Interruption.task_id == task.id).state == "closed"
    assert reconcile() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_worker_user_is_honoured(rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started directly and forked from the worker's fork server alike, the runner runs as
    the worker account (uid, gid, no supplementary groups), with the allow-listed
    environment only."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody here")
    monkeypatch.setattr(quiet, "IDLE_SHARE", 0.0)  # the machine is shared: any idle will do
    # pytest's tmp dirs are 0700: the worker dir must be somewhere nobody can traverse to
    root = Path(tempfile.gettempdir()) / f"octo-worker-test-{secrets.token_hex(4)}"
    rig.local.configure(enabled=True, root=root, user="nobody")
    body = (
        "id -un; id -G; echo HOME=$HOME; env | grep -c ^OCTO_ || true; "
        "grep ^PPid: /proc/$PPID/status | tr -dc 0-9; echo"
    )
    command = RunnerCommand(
        task_id="task_whoami", command="run-script", arguments={"syntax": "sh", "body": body}
    )

    async def run() -> list[str]:
        events: list[dict[str, Any]] = []
        result = await rig.local.run_runner(WORKER, command, events.append)
        assert result.success, result.message
        return [e["message"] for e in events if e.get("stream") == "stdout"]

    async def scenario() -> tuple[list[str], list[str], int, int]:
        try:
            direct = await run()
            for _ in range(600):  # bounded wait for the fork server (started when quiet)
                if rig.local.host.fork_pool.server is not None:
                    break
                await asyncio.sleep(0.05)
            server = rig.local.host.fork_pool.server
            assert server is not None, "the worker's fork server did not start"
            forked = await run()
            return direct, forked, server.pid, psutil.Process(server.pid).uids().real
        finally:
            await rig.local.close()

    os.environ["OCTO_MASTER_KEY"] = "must-not-leak"
    try:
        direct, forked, server_pid, server_uid = asyncio.run(scenario())
    finally:
        del os.environ["OCTO_MASTER_KEY"]
        shutil.rmtree(root, ignore_errors=True)
    expected = ["nobody", str(nobody.pw_gid), f"HOME={root / 'home'}", "0"]
    assert direct[:4] == expected
    assert forked[:4] == expected
    assert forked[4] == str(server_pid)  # the runner was forked by the fork server...
    assert server_uid == nobody.pw_uid  # ...which runs as the worker account too


def test_cancel_while_waiting_closes_the_interruption(rig: Rig) -> None:
    approve = {"name": "Wait", "type": "manual-intervention", "properties": {"instructions": "x"}}
    deployment = rig.deploy(rig.release([approve]))

    def pending() -> bool:
        return Interruption.select().where(Interruption.task_id == deployment.task_id).exists()

    wait_until(pending, "the interruption")
    assert rig.engine.cancel(deployment.task_id, "bob") == "requested"
    task = wait_finished(deployment.task_id)

    assert task.state == "canceled"
    assert Deployment.get_by_id(deployment.id).state == "canceled"
    row = Interruption.get(Interruption.task_id == task.id)
    assert row.state == "closed"
    assert steps_of(task)["Wait"]["state"] == "canceled"


def test_lifecycle_promotes_automatically(rig: Rig) -> None:
    prod = Environment.create_new(name="Prod")
    phases = [
        {"name": "Dev", "environments": [rig.environment.id], "automatic": False},
        {"name": "Prod", "environments": [prod.id], "automatic": True},
    ]
    release = rig.release([script("Say", "echo in #{Octo.Environment.Name}")], phases=phases)

    first = wait_finished(rig.deploy(release).task_id)

    assert first.state == "success", first.error

    def promoted() -> Deployment | None:
        found: Deployment | None = Deployment.get_or_none(
            (Deployment.release == release.id) & (Deployment.environment == prod.id)
        )
        return found

    wait_until(lambda: promoted() is not None, "the automatic deployment to Prod")
    automatic = promoted()
    assert automatic is not None and automatic.created_by == "lifecycle (automatic)"
    second = wait_finished(automatic.task_id)
    assert second.state == "success", second.error
    assert "in Prod" in "\n".join(rig.log(second.id))
    assert "deploys this release onward automatically" in "\n".join(rig.log(first.id))
