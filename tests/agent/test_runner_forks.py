"""Runners forked from a fork server (``octo_appliance.agent.forkpool``), with real runners.

Once a build has served a task, the runner host starts a fork server of it when the agent
process is quiet, and later tasks get a runner forked from that server. These tests check
that such a runner is the same process a task would have started (flags, session,
environment, work dir, exit code, parent death), that cancelling it kills its whole tree,
and that fork servers are started only when quiet, replaced when they die or their build
does, and ended with their host (with their agent: test_fork_server_agent_death.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from octo_appliance.agent import quiet
from octo_appliance.agent.runner_host import RunnerHost

from .fork_support import (
    HELD,
    REAL_IDLE_SHARE,
    RUNNER,
    RUNNER_PARENT,
    RUNNER_PID,
    Task,
    descendants,
    fork_server,
    fork_servers,
    forked_task,
    gone,
    none_started,
    parent_of_runner,
    run,
    wait_gone,
    warm_fork_server,
)


@pytest.fixture(autouse=True)
def busy_machine_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork servers start when this process is quiet even if the machine is busy (other
    tests running beside these); the machine's share is tested on its own below."""
    monkeypatch.setattr(quiet, "IDLE_SHARE", 0.0)


@pytest.fixture
async def host() -> Any:
    host = RunnerHost()
    yield host
    await host.terminate_all()


async def test_a_later_task_gets_a_runner_forked_in_its_work_dir(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    first = Task(host, pyz, tmp_path / "work" / "t1-1", HELD)
    direct = psutil.Process(int(await first.saying("runner ")))
    assert direct.ppid() == os.getpid()  # no fork server yet: started directly
    assert host.fork_pool.server is None
    first.release()
    assert (await first.outcome())["success"]
    server = await fork_server(host)
    assert server != direct.pid

    second = Task(host, pyz, tmp_path / "work" / "t2-1", HELD)
    runner = psutil.Process(int(await second.saying("runner ")))

    assert runner.ppid() == server
    assert runner.cwd() == str(second.work_dir)
    assert os.getsid(runner.pid) == runner.pid and os.getpgid(runner.pid) == runner.pid
    second.release()
    assert (await second.outcome())["success"]
    await wait_gone(runner.pid, "the runner of the finished task")
    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t3-1") == server  # reused


async def test_the_fork_server_is_started_as_a_task_would_start_a_runner(
    host: RunnerHost, pyz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCTO_API_KEY", "must-not-reach-scripts")
    monkeypatch.setenv("OCTO_TEST_MARKER", "inherited")
    await run(host, pyz, tmp_path / "work" / "t1-1", "true")
    server = psutil.Process(await fork_server(host))

    assert server.cmdline() == [sys.executable, "-I", "-S", str(pyz), "--fork-server"]
    assert server.ppid() == os.getpid()
    assert os.getsid(server.pid) == server.pid and os.getpgid(server.pid) == server.pid
    environment = server.environ()
    assert "OCTO_API_KEY" not in environment
    assert environment["OCTO_TEST_MARKER"] == "inherited"

    body = f'{RUNNER_PARENT}\necho "key ${{OCTO_API_KEY:-none}}"\necho "marker $OCTO_TEST_MARKER"'
    task = await run(host, pyz, tmp_path / "work" / "t2-1", body)
    assert int(task.said("parent ")) == server.pid
    assert task.said("key ") == "none" and task.said("marker ") == "inherited"


async def test_a_cancelled_task_on_a_forked_runner_loses_its_whole_tree(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    server, task, runner, tree = await forked_task(host, pyz, tmp_path, 2)

    task.running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task.running

    for process in [runner, *tree]:
        await wait_gone(process.pid, "a process of the cancelled task")
    assert not gone(server)
    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t3-1") == server


async def test_fork_servers_are_started_only_when_no_task_runs(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    """One identity's task ends while another's runs in the same process: its fork server
    waits until that one has ended too, so its start never competes with a task."""
    other = RunnerHost()
    try:
        long = Task(other, pyz, tmp_path / "work" / "long-1", HELD)
        await long.saying("runner ")
        await run(host, pyz, tmp_path / "work" / "short-1", "true")

        await none_started(host, other)
        assert not long.running.done()

        long.release()
        assert (await long.outcome())["success"]
        mine, theirs = await fork_server(host), await fork_server(other)
        assert mine == theirs  # one build, one start command: one server for both
        assert fork_servers() == [mine]
    finally:
        (tmp_path / "work" / "long-1" / "release").touch()
        await other.terminate_all()


async def test_fork_servers_are_started_only_when_the_machine_is_mostly_idle(
    host: RunnerHost, pyz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quiet, "IDLE_SHARE", REAL_IDLE_SHARE)
    monkeypatch.setattr(quiet, "PATIENCE_SECONDS", 3600.0)  # the share alone decides here
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        await run(host, pyz, tmp_path / "work" / "t1-1", "true")
        await none_started(host)  # four quiet moments, all CPUs busy
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    # The start waited, it was not dropped: once the share is met it happens. The machine is
    # shared (CI, other work), so "met" is made certain here; the arithmetic of the share is
    # test_idle_share_of_the_machine's.
    quiet.activity().idle_share = 0.0
    await fork_server(host)


async def test_a_machine_that_stays_busy_does_not_postpone_the_fork_server_for_ever(
    host: RunnerHost, pyz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a machine shared with other work the CPUs may never be half idle; after the
    patience without a task the fork server starts anyway (once), instead of every later
    task starting a runner of its own."""
    monkeypatch.setattr(quiet, "IDLE_SHARE", 1.01)  # never idle enough, whatever the machine
    monkeypatch.setattr(quiet, "PATIENCE_SECONDS", 4 * quiet.QUIET_SECONDS)
    await run(host, pyz, tmp_path / "work" / "t1-1", "true")

    server = await fork_server(host)

    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t2-1") == server


@pytest.mark.parametrize(
    ("before", "after", "idle"),
    [
        pytest.param((10.0, 20.0), (10.0, 22.0), False, id="no idle time: busy"),
        pytest.param((10.0, 20.0), (10.9, 22.0), False, id="45% idle: busy"),
        pytest.param((10.0, 20.0), (11.0, 22.0), True, id="50% idle: idle"),
        pytest.param((10.0, 20.0), (12.0, 22.0), True, id="all idle"),
        pytest.param((10.0, 20.0), (10.0, 20.0), True, id="no tick counted yet"),
    ],
)
def test_idle_share_of_the_machine(
    before: tuple[float, float],
    after: tuple[float, float],
    idle: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy = quiet.Activity()
    busy.idle_share = 0.5
    busy._cpu_before = before
    monkeypatch.setattr(quiet, "_cpu_times", lambda: after)
    assert busy._machine_was_idle() is idle


async def test_terminate_all_ends_the_fork_server_and_starts_no_more(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    server = await warm_fork_server(host, pyz, tmp_path)

    await host.terminate_all()

    assert gone(server)
    assert host.fork_pool.server is None
    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t2-1") == os.getpid()
    await none_started(host)


async def test_a_fork_server_that_dies_while_idle_is_replaced(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    old = await warm_fork_server(host, pyz, tmp_path)

    os.kill(old, signal.SIGKILL)
    await wait_gone(old, "the killed fork server")
    direct = await parent_of_runner(host, pyz, tmp_path / "work" / "t2-1")
    assert direct == os.getpid()  # the dead server is noticed: this one is started directly
    new = await fork_server(host, other_than=old)

    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t3-1") == new


async def test_a_fork_server_of_a_replaced_build_is_not_used(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    old = await warm_fork_server(host, pyz, tmp_path)

    replacement = pyz.with_name("new.partial")
    shutil.copy(pyz, replacement)
    os.replace(replacement, pyz)  # a new build at the same path, as the runner cache does

    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t2-1") == os.getpid()
    await wait_gone(old, "the fork server of the old build")
    new = await fork_server(host, other_than=old)
    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t3-1") == new


async def test_a_replaced_build_does_not_cancel_a_runner_forked_from_the_old_one(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    """The old build's server is retired, not killed, while a runner it forked still works:
    its runners stop with it (parent-death signal), so it ends only after the last one."""
    old = await warm_fork_server(host, pyz, tmp_path)
    held = Task(host, pyz, tmp_path / "work" / "t2-1", HELD)
    runner = int(await held.saying("runner "))
    assert psutil.Process(runner).ppid() == old

    replacement = pyz.with_name("new.partial")
    shutil.copy(pyz, replacement)
    os.replace(replacement, pyz)
    # another task of the same host meanwhile (a health check does not take the mutex)
    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t3-1") == os.getpid()

    assert not gone(old) and not gone(runner)
    held.release()
    outcome = await held.outcome()
    assert outcome["success"] is True and outcome["exit_code"] == 0, outcome
    await wait_gone(old, "the retired fork server, after its last runner")


async def test_a_subclass_with_its_own_spawn_starts_runners_only_for_tasks(
    pyz: Path, tmp_path: Path
) -> None:
    class OwnSpawn(RunnerHost):
        async def spawn(self, pyz: Path, work_dir: Path) -> Any:
            return await super().spawn(pyz, work_dir)

    class OptedIn(OwnSpawn):
        forks = True

    from octo_appliance.transports.local import WorkerHost

    assert RunnerHost.forks and OptedIn.forks
    assert not OwnSpawn.forks and not OwnSpawn().can_fork()
    assert WorkerHost(None).can_fork()
    host = OwnSpawn()
    try:
        assert await parent_of_runner(host, pyz, tmp_path / "work" / "t1-1") == os.getpid()
        await none_started(host)
        assert await parent_of_runner(host, pyz, tmp_path / "work" / "t2-1") == os.getpid()
    finally:
        await host.terminate_all()


async def test_the_exit_code_of_a_forked_runner_reaches_the_host(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    server = await warm_fork_server(host, pyz, tmp_path)

    failed = Task(host, pyz, tmp_path / "work" / "t2-1", f"{RUNNER}\nexit 3")
    outcome = await failed.outcome()
    assert int(failed.said("parent ")) == server
    assert outcome["exit_code"] == 3 and outcome["success"] is False

    killed = Task(host, pyz, tmp_path / "work" / "t3-1", f"{RUNNER_PID}\nsleep 300")
    runner = psutil.Process(int(await killed.saying("runner ")))
    assert runner.ppid() == server
    tree = await descendants(runner, 1)
    try:
        runner.kill()
        outcome = await killed.outcome()
    finally:
        for process in tree:  # the script outlives a runner killed without a cancel
            with contextlib.suppress(psutil.Error):
                process.kill()
    assert outcome["success"] is False
    assert outcome["exit_code"] == -signal.SIGKILL  # as the fork server saw it end


async def test_a_forked_runner_whose_fork_server_dies_is_cancelled(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    server, task, runner, tree = await forked_task(host, pyz, tmp_path, 1)

    os.kill(server, signal.SIGKILL)  # the runner gets SIGTERM (its parent-death signal)
    outcome = await task.outcome()

    assert outcome["success"] is False and outcome["canceled"] is True, outcome
    for process in [runner, *tree]:
        await wait_gone(process.pid, "a process of the task whose fork server died")
    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t3-1") == os.getpid()
    new = await fork_server(host, other_than=server)
    assert await parent_of_runner(host, pyz, tmp_path / "work" / "t4-1") == new
