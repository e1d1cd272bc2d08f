"""The ``octo-appliance`` client commands as subprocesses against a real appliance process.

One appliance for the module, set up through the API: environment ``Dev`` and projects whose
``run-script`` steps run on the appliance's built-in worker (``ok`` prints and succeeds,
``bad`` fails with exit code 3, ``slow`` sleeps, ``ask`` waits for a manual intervention
first). Everything else goes through the CLI: releases, deployments followed live, task logs,
cancelling, answering interruptions, --json, the package feed, and the failures people make
(wrong thumbprint, bad key, unknown project, no pin) with their messages and exit codes.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import threading
import weakref
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_support import TIMEOUT, Appliance, running_appliance

PROJECTS: dict[str, list[dict[str, Any]]] = {
    "ok": [
        {
            "name": "Say",
            "type": "run-script",
            "properties": {
                "syntax": "bash",
                "body": 'echo "hello from #{Octo.Environment.Name}"',
                "run_on": "appliance",
            },
        }
    ],
    "bad": [
        {
            "name": "Fail",
            "type": "run-script",
            "properties": {
                "syntax": "bash",
                "body": "echo about to fail; exit 3",
                "run_on": "appliance",
            },
        }
    ],
    "slow": [
        {
            "name": "Sleep",
            "type": "run-script",
            "properties": {
                "syntax": "bash",
                "body": "echo sleeping; sleep 300",
                "run_on": "appliance",
            },
        }
    ],
    "ask": [
        {
            "name": "Approve",
            "type": "manual-intervention",
            "properties": {"instructions": "Check the dashboard"},
        },
        {
            "name": "After",
            "type": "run-script",
            "properties": {
                "syntax": "bash",
                "body": "echo approved and done",
                "run_on": "appliance",
            },
        },
    ],
}


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("cli-client") / "data") as appliance:
        with appliance.api() as api:
            assert api.post("/api/v1/environments", json={"name": "Dev"}).status_code == 201
            for name, steps in PROJECTS.items():
                project = api.post("/api/v1/projects", json={"name": name})
                assert project.status_code == 201, project.text
                process = api.put(f"/api/v1/projects/{name}/process", json={"steps": steps})
                assert process.status_code == 200, process.text
        yield appliance


def new_release(appliance: Appliance, project: str) -> str:
    done = appliance.cli("release", "create", "--project", project, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["version"])


def task_state(appliance: Appliance, task_id: str) -> str:
    with appliance.api() as api:
        return str(api.get(f"/api/v1/tasks/{task_id}").json()["state"])


#: pipes a :func:`follow` thread reads, and closes at their end
PUMPED: weakref.WeakSet[Any] = weakref.WeakSet()


def pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    with stream:
        for line in stream:
            lines.put(line.rstrip("\n"))
    lines.put(None)


def follow(stream: Any) -> queue.Queue[str | None]:
    """The stream's lines as a thread reads them (``None`` at its end)."""
    lines: queue.Queue[str | None] = queue.Queue()
    PUMPED.add(stream)
    threading.Thread(target=pump, args=(stream, lines), daemon=True).start()
    return lines


def stop(process: subprocess.Popen[str]) -> None:
    """Kill ``process`` if it still runs, and close the pipes no :func:`follow` thread owns."""
    process.kill()
    process.wait()
    for pipe in (process.stdout, process.stderr):
        if pipe is not None and pipe not in PUMPED:
            pipe.close()


def wait_for_line(lines: queue.Queue[str | None], pattern: str) -> re.Match[str]:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(seen)) from None
        if line is None:
            raise AssertionError(f"output ended without {pattern!r}:\n" + "\n".join(seen))
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match


# -- releases and deployments ------------------------------------------------------------------


def to_dev(project: str, release: str, *extra: str) -> list[str]:
    """The ``deploy`` command line of ``project``'s ``release`` to Dev."""
    return ["deploy", "--project", project, "--release", release, "--environment", "Dev", *extra]


def test_release_create_then_deploy_wait_shows_the_log_and_succeeds(
    appliance: Appliance,
) -> None:
    created = appliance.cli("release", "create", "--project", "ok", "--version", "1.0.0")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("Created release 1.0.0 of project ok (rel_")

    done = appliance.cli(*to_dev("ok", "1.0.0", "--wait"))

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Deploying ok 1.0.0 to Dev: deployment dep_")
    assert any(line.endswith("[appliance] hello from Dev") for line in lines)
    assert any("Step 'Say' (run-script) started." in line for line in lines)
    assert re.match(r"  success +Say", lines[-2])
    assert re.match(r"Task task_\w+ success", lines[-1])


def test_a_failing_script_exits_1_with_its_log(appliance: Appliance) -> None:
    version = new_release(appliance, "bad")

    done = appliance.cli(*to_dev("bad", version, "--wait"))

    assert done.returncode == 1
    assert "[appliance] about to fail" in done.stdout
    assert "the script failed with exit code 3" in done.stdout
    assert re.search(r"^Task task_\w+ failed", done.stdout, re.MULTILINE)


def test_deploy_wait_json_is_one_document_with_the_log_on_stderr(appliance: Appliance) -> None:
    version = new_release(appliance, "ok")

    done = appliance.cli(*to_dev("ok", "latest", "--wait", "--json"))

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["deployment"]["state"] == "success"
    assert document["deployment"]["release_version"] == version
    assert document["task"]["state"] == "success"
    assert [step["state"] for step in document["task"]["summary"]["steps"]] == ["success"]
    assert "hello from Dev" in done.stderr


def test_task_log_prints_a_finished_log_as_text_and_json(appliance: Appliance) -> None:
    version = new_release(appliance, "ok")
    deployed = appliance.cli(*to_dev("ok", version, "--wait", "--json"))
    task_id = json.loads(deployed.stdout)["task"]["id"]
    deployment_id = json.loads(deployed.stdout)["deployment"]["id"]

    shown = appliance.cli("task", "show", deployment_id)  # a deployment id names its task
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"Deploy ok {version} to Dev (deployment)"
    assert re.match(r"  success +Say", shown.stdout.splitlines()[1])
    text = appliance.cli("task", "log", task_id)
    as_json = appliance.cli("task", "log", task_id, "--json")
    followed = appliance.cli("task", "log", task_id, "--follow")

    assert text.returncode == 0 and "[appliance] hello from Dev" in text.stdout
    document = json.loads(as_json.stdout)
    assert document["finished"] is True and document["state"] == "success"
    assert any(line["message"] == "hello from Dev" for line in document["lines"])
    seqs = [line["seq"] for line in document["lines"]]
    assert seqs == sorted(seqs) and len(text.stdout.splitlines()) == len(seqs)
    assert followed.returncode == 0
    assert followed.stdout.splitlines()[-1] == f"Task {task_id} success."


def test_task_cancel_stops_a_long_sleep(appliance: Appliance) -> None:
    version = new_release(appliance, "slow")
    started = appliance.cli(*to_dev("slow", version, "--json"))
    assert started.returncode == 0, started.stderr
    deployment = json.loads(started.stdout)
    task_id = deployment["task_id"]
    follower = appliance.start("task", "log", deployment["id"], "--follow")
    try:
        lines = follow(follower.stdout)
        wait_for_line(lines, r"\[appliance\] sleeping")

        canceled = appliance.cli("task", "cancel", task_id, "--wait")

        assert canceled.returncode == 0, canceled.stderr
        assert f"Task {task_id} canceled." in canceled.stdout
        wait_for_line(lines, rf"^Task {task_id} canceled")
        assert follower.wait(timeout=TIMEOUT) == 1
    finally:
        stop(follower)
    assert task_state(appliance, task_id) == "canceled"

    again = appliance.cli("task", "cancel", task_id)
    assert again.returncode == 1
    assert f"error: task {task_id} has already finished (canceled)" in again.stderr
    assert "hint: " in again.stderr


def test_ctrl_c_stops_following_but_not_the_deployment(appliance: Appliance) -> None:
    version = new_release(appliance, "slow")
    command = to_dev("slow", version)
    deploying = appliance.start(*command, "--wait")
    try:
        lines = follow(deploying.stdout)
        assert deploying.stderr is not None
        task_id = wait_for_line(lines, r"task (task_\w+)\.$")[1]
        wait_for_line(lines, r"\[appliance\] sleeping")

        deploying.send_signal(signal.SIGINT)

        assert deploying.wait(timeout=TIMEOUT) == 130
        stderr = deploying.stderr.read()
    finally:
        stop(deploying)
    assert "Traceback" not in stderr
    assert f"goes on. Follow it again with 'octo-appliance task log {task_id} --follow'" in stderr
    assert task_state(appliance, task_id) == "executing"
    assert appliance.cli("task", "cancel", task_id, "--wait").returncode == 0


def test_a_manual_intervention_is_announced_and_answered(appliance: Appliance) -> None:
    version = new_release(appliance, "ask")
    command = to_dev("ask", version, "--wait")
    deploying = appliance.start(*command)
    try:
        errors = follow(deploying.stderr)
        match = wait_for_line(
            errors, r"answer: octo-appliance interruption submit (int_\w+) approve\|reject"
        )
        interruption_id = match[1]

        listed = appliance.cli("interruption", "list", "--json")
        assert interruption_id in [item["id"] for item in json.loads(listed.stdout)["items"]]
        answered = appliance.cli(
            "interruption", "submit", interruption_id, "approve", "--notes", "checked"
        )

        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.startswith(f"Answered {interruption_id} (")
        assert deploying.wait(timeout=TIMEOUT) == 0
        assert deploying.stdout is not None
        output = deploying.stdout.read()
    finally:
        stop(deploying)
    assert "approve by admin (checked)" in output
    assert "[appliance] approved and done" in output

    twice = appliance.cli("interruption", "submit", interruption_id, "reject")
    assert twice.returncode == 1
    assert "already answered (approve by admin)" in twice.stderr


# -- failures people make ----------------------------------------------------------------------


def test_a_wrong_thumbprint_sends_nothing(appliance: Appliance) -> None:
    wrong = "0" * 64

    done = appliance.cli("release", "list", "--project", "ok", OCTO_SERVER_THUMBPRINT=wrong)

    assert done.returncode == 1
    assert f"expected {wrong}; the API key was not sent" in done.stderr
    assert "hint: check --server-thumbprint against the appliance's banner" in done.stderr


def test_a_bad_key_is_refused_and_never_printed(appliance: Appliance) -> None:
    bad = "OCTO-bogus-" + "x" * 30

    done = appliance.cli("release", "list", "--project", "ok", "--api-key", bad)

    assert done.returncode == 1
    assert "error: the appliance refused the API key" in done.stderr
    assert "api-key create" in done.stderr
    assert bad not in done.stdout + done.stderr


def test_an_unknown_project_is_named(appliance: Appliance) -> None:
    done = appliance.cli("release", "create", "--project", "no-such-project")

    assert done.returncode == 1
    assert "error: no project with id or name 'no-such-project'" in done.stderr
    assert "hint: " in done.stderr


def test_an_unknown_release_and_environment_are_named(appliance: Appliance) -> None:
    no_release = appliance.cli(*to_dev("ok", "9.9.9"))
    no_env = appliance.cli(
        "deploy", "--project", "ok", "--release", "latest", "--environment", "Nowhere"
    )

    assert no_release.returncode == 1
    assert "project 'ok' has no release '9.9.9'" in no_release.stderr
    assert no_env.returncode == 1
    assert "unknown environment: Nowhere" in no_env.stderr
    # the appliance's 422 carries no hint of its own; the client adds one (docs/cli.md)
    assert "octo-appliance: hint: correct the value the message names" in no_env.stderr


def test_without_a_thumbprint_the_certificate_must_be_trusted(appliance: Appliance) -> None:
    untrusted = appliance.cli("release", "list", "--project", "ok", OCTO_SERVER_THUMBPRINT="")
    trusted = appliance.cli(
        "release",
        "list",
        "--project",
        "ok",
        OCTO_SERVER_THUMBPRINT="",
        SSL_CERT_FILE=str(appliance.server.cert_file),
    )

    assert untrusted.returncode == 1
    assert "is not trusted" in untrusted.stderr
    assert "--server-thumbprint" in untrusted.stderr
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.splitlines()[0].split() == ["VERSION", "CREATED", "BY", "ID"]


def test_usage_errors_exit_2(appliance: Appliance) -> None:
    no_server = appliance.cli("task", "show", "task_x", OCTO_SERVER="")
    no_args = appliance.cli("deploy", "--project", "ok")

    assert no_server.returncode == 2
    assert "error: no appliance given" in no_server.stderr
    assert no_args.returncode == 2
    assert "the following arguments are required: --release, --environment" in no_args.stderr


# -- the package feed --------------------------------------------------------------------------


def test_package_push_and_list(appliance: Appliance, tmp_path: Path) -> None:
    archive = tmp_path / "Cli.Demo.1.2.3.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("app/hello.txt", "hello " * 1000)
        zipped.writestr("app/data.bin", os.urandom(200_000))

    pushed = appliance.cli("package", "push", str(archive), "--json")
    duplicate = appliance.cli("package", "push", str(archive))
    replaced = appliance.cli("package", "push", str(archive), "--replace")
    listed = appliance.cli("package", "list", "--id", "Cli.Demo", "--json")
    table = appliance.cli("package", "list", "--id", "Cli.Demo")

    assert pushed.returncode == 0, pushed.stderr
    package = json.loads(pushed.stdout)
    assert (package["package_id"], package["version"]) == ("Cli.Demo", "1.2.3")
    assert package["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert "pushing Cli.Demo.1.2.3.zip" in pushed.stderr and "(100%)" in pushed.stderr
    assert duplicate.returncode == 1
    assert "--replace" in duplicate.stderr
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.startswith("Replaced Cli.Demo 1.2.3")
    assert [item["version"] for item in json.loads(listed.stdout)["items"]] == ["1.2.3"]
    assert table.stdout.splitlines()[1].split()[:3] == ["Cli.Demo", "1.2.3", "zip"]
