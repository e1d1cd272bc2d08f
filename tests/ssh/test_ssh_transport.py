"""The ssh transport against a real OpenSSH server: logins, host-key pinning, the runner on
the target with only python3, the package cache, cancellation, reconnection."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from octo_appliance.comms import CallFailed
from octo_appliance.transports.base import RunnerCommand
from octo_appliance.transports.ssh.settings import SshCredentials, openssh_fingerprint
from tests.ssh.conftest import Rig, sha256

pytestmark = pytest.mark.slow


def script(body: str, task_id: str = "tsk_ssh", **arguments: Any) -> RunnerCommand:
    return RunnerCommand(
        task_id=task_id,
        command="run-script",
        arguments={"syntax": "bash", "body": body, **arguments},
        variables=[
            {"name": "Greeting", "value": "hello", "sensitive": False},
            {"name": "Secret", "value": "s3cr3t-value", "sensitive": True},
        ],
    )


async def run(rig: Rig, target: Any, command: RunnerCommand) -> tuple[Any, list[str]]:
    lines: list[str] = []

    def collect(event: dict[str, Any]) -> None:
        if event.get("type") == "log":
            lines.append(str(event.get("message")))

    result = await rig.transport.run_runner(target, command, collect)
    return result, lines


async def test_key_login_runs_the_runner_with_variables_from_stdin(rig: Rig) -> None:
    target = rig.add("web-1")
    result, lines = await run(
        rig, target, script('echo "#{Greeting} $$"; echo "secret=#{Secret}"; ps -o args= -p $PPID')
    )
    assert result.success, (result.message, lines)
    assert any(line.startswith("hello ") for line in lines), lines
    assert "secret=********" in lines, lines
    # the runner's argv (the script's parent): an interpreter, -I -S and the runner, no more
    pyz = f"{rig.root / 'web-1' / 'runners'}/{rig.transport.context.runner.sha256}.pyz"
    argv = [line.split() for line in lines if line.endswith(".pyz")]
    assert len(argv) == 1 and argv[0][0].endswith("python3"), lines
    assert argv[0][1:] == ["-I", "-S", pyz], lines
    assert not any("s3cr3t-value" in line for line in lines), lines
    directory = rig.root / "web-1"
    runners = list((directory / "runners").iterdir())
    assert [p.name for p in runners] == [f"{rig.transport.context.runner.sha256}.pyz"]
    assert list((directory / "work").iterdir()) == [] or await _eventually_empty(directory / "work")


async def _eventually_empty(path: Path) -> bool:
    for _ in range(50):
        if not list(path.iterdir()):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_one_connection_serves_every_step_and_the_runner_is_uploaded_once(rig: Rig) -> None:
    target = rig.add("reuse")
    before = {session.pid for session in rig.sshd.sessions()}
    results = await asyncio.gather(
        *(rig.transport.run_runner(target, script("echo step", exclusive=False)) for _ in range(3))
    )
    results += [await rig.transport.run_runner(target, script(f"echo {n}")) for n in range(2)]
    assert all(r.success for r in results)
    opened = [session for session in rig.sshd.sessions() if session.pid not in before]
    assert len(opened) == 1, opened
    runner = rig.root / "reuse" / "runners" / f"{rig.transport.context.runner.sha256}.pyz"
    first = runner.stat().st_mtime_ns
    assert (await rig.transport.run_runner(target, script("true"))).success
    assert runner.stat().st_mtime_ns == first


async def test_password_login(rig: Rig) -> None:
    if rig.sshd.password_user is None:
        pytest.skip("password logins need a test account, made only when running as root")
    target = rig.add(
        "pw",
        user=rig.sshd.password_user,
        directory=".octo-test",
        credentials=SshCredentials(password=rig.sshd.password),
    )
    result, lines = await run(rig, target, script("id -un"))
    assert result.success, result.message
    assert rig.sshd.password_user in lines


async def test_a_changed_host_key_is_refused_naming_both_fingerprints(rig: Rig) -> None:
    pinned = "ab" * 32
    target = rig.add("moved", fingerprint=pinned)
    with pytest.raises(CallFailed) as raised:
        await rig.transport.info(target)
    message = raised.value.message
    assert raised.value.code == "host_key_mismatch"
    assert openssh_fingerprint(pinned) in message
    assert rig.sshd.host_key_fingerprint in message
    assert not (rig.root / "moved").exists()  # nothing ran there


async def test_first_contact_needs_a_fingerprint_or_trust_on_first_use(rig: Rig) -> None:
    unknown = rig.add("new", fingerprint="")
    with pytest.raises(CallFailed) as raised:
        await rig.transport.info(unknown)
    assert raised.value.code == "host_key_unknown"
    assert rig.sshd.host_key_fingerprint in raised.value.message
    tofu = rig.add("tofu", fingerprint="", trust_on_first_use=True)
    await rig.transport.info(tofu)
    recorded = rig.targets.rows["tgt_tofu"].fingerprint
    assert openssh_fingerprint(recorded) == rig.sshd.host_key_fingerprint


async def test_wrong_credentials_are_refused(rig: Rig) -> None:
    other = rig.sshd.no_python_key.replace("a", "a")  # a real key, not authorized for pw
    target = rig.add("bad-key", user="nobody", credentials=SshCredentials(private_key=other))
    with pytest.raises(CallFailed) as raised:
        await rig.transport.info(target)
    assert raised.value.code == "ssh_auth_failed"
    assert "nobody" in raised.value.message
    wrong = rig.add("bad-pw", credentials=SshCredentials(password="not-the-password"))
    with pytest.raises(CallFailed) as raised:
        await rig.transport.info(wrong)
    assert raised.value.code == "ssh_auth_failed"
    assert "not-the-password" not in raised.value.message


async def test_no_python3_is_a_clear_failure_naming_it(rig: Rig) -> None:
    target = rig.add("bare", credentials=SshCredentials(private_key=rig.sshd.no_python_key))
    with pytest.raises(CallFailed) as raised:
        await rig.transport.info(target)
    assert raised.value.code == "python_missing"
    assert "python3" in raised.value.message and "bare" in raised.value.message


async def test_packages_go_into_the_cache_by_sha256_and_are_found_there(rig: Rig) -> None:
    target = rig.add("cache")
    data = os.urandom(5 * 1024 * 1024 + 17)
    digest = sha256(data)
    assert not await rig.transport.has_file(target, digest)
    await rig.transport.upload(target, data, digest, "app.zip")
    assert (rig.root / "cache" / "cache" / digest).read_bytes() == data
    assert await rig.transport.has_file(target, digest)
    assert await rig.transport.cached_versions(target, "App") == []
    with pytest.raises(CallFailed, match="is not"):
        await rig.transport.upload(target, b"other", digest[::-1], "bad.zip")
    leftovers = [p.name for p in (rig.root / "cache" / "cache").iterdir()]
    assert leftovers == [digest]


async def test_cancelling_kills_the_remote_process_group(rig: Rig) -> None:
    target = rig.add("cancel")
    marker = rig.root / "cancel-pid"
    body = f"sleep 300 & echo $! > {marker}; trap '' TERM; wait"
    command = script(body, cancel_grace_seconds=1)
    running = asyncio.create_task(rig.transport.run_runner(target, command))
    for _ in range(200):
        if marker.exists() and marker.read_text().strip():
            break
        await asyncio.sleep(0.05)
    sleeper = int(marker.read_text())
    assert psutil.pid_exists(sleeper)
    started = time.monotonic()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for _ in range(200):
        if not _alive(sleeper):
            break
        await asyncio.sleep(0.05)
    assert not _alive(sleeper), "the script's child outlived the cancel"
    assert time.monotonic() - started < 60


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def test_a_dropped_connection_is_reopened_for_the_next_task(rig: Rig) -> None:
    target = rig.add("drop")
    assert (await rig.transport.run_runner(target, script("true"))).success
    rig.sshd.drop_connections()
    await asyncio.sleep(0.2)
    result = await rig.transport.run_runner(target, script("echo again"))
    assert result.success, result.message


async def test_changed_settings_open_a_new_connection(rig: Rig) -> None:
    target = rig.add("edit")
    await rig.transport.info(target)
    row = rig.targets.rows["tgt_edit"]
    rig.targets.rows["tgt_edit"] = dataclasses.replace(row, fingerprint="cd" * 32)
    with pytest.raises(CallFailed, match="changed"):
        await rig.transport.info(target)
