"""Runners forked from a fork server (``octo_appliance.agent.forkpool``), with real runners.

Once a build has served a task, the runner host starts a fork server of it when the agent
process is quiet, and later tasks get a runner forked from that server. These tests check
that such a runner is the same process a task would have started (flags, session,
environment, work dir, exit code, parent death), that cancelling it kills its whole tree,
and that fork servers are started only when quiet, replaced when they die or their build
does, and ended with their host or their agent.
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

from .conftest import RunnerBuild
from .support import ROOT, wait_for


class Task:
    """One ``host.run`` with a bash script; its events and outcome."""

    def __init__(self, host: RunnerHost, pyz: Path, work_dir: Path, body: str) -> None:
        self.events: list[dict[str, Any]] = []
        work_dir.mkdir(parents=True)
        self.work_dir = work_dir
        document = {
            "protocol": 1,
            "command": "run-script",
            "arguments": {"syntax": "bash", "body": body, "cancel_grace_seconds": 1},
            "variables": [],
            "work_dir": str(work_dir),
            "context": {"task_id": work_dir.name},
        }
        self.running = asyncio.ensure_future(
            host.run(
                pyz,
                document,
                work_dir=work_dir,
                task_id=work_dir.name,
                emit=self._emit,
                kill_grace=5,
            )
        )

    async def _emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def said(self, prefix: str) -> str:
        """The rest of the first script line that starts with ``prefix``."""
        for event in self.events:
            message = str(event.get("message", ""))
            if event.get("stream") == "stdout" and message.startswith(prefix):
                return message[len(prefix) :]
        raise AssertionError(f"the script did not say {prefix!r}: {self.events}")

    async def saying(self, prefix: str) -> str:
        """:meth:`said`, once the running script has said it."""
        for _ in range(600):  # bounded polling, up to 30 s
            with contextlib.suppress(AssertionError):
                return self.said(prefix)
            if self.running.done():
                break
            await asyncio.sleep(0.05)
        return self.said(prefix)

    def release(self) -> None:
        """Let a script waiting in :data:`HELD` end."""
        (self.work_dir / "release").touch()

    async def outcome(self) -> dict[str, Any]:
        """The outcome, bounded: a task that never ends fails the test instead of hanging."""
        return await asyncio.wait_for(asyncio.shield(self.running), 60)


async def run(host: RunnerHost, pyz: Path, work_dir: Path, body: str) -> Task:
    task = Task(host, pyz, work_dir, body)
    outcome = await task.outcome()
    assert outcome["success"], outcome
    return task


#: the runner's pid, and the pid of the runner's parent (``/proc/PID/stat``: pid (comm) state ppid)
RUNNER_PID = 'echo "runner $PPID"'
RUNNER_PARENT = 'read -r _ _ _ parent _ < "/proc/$PPID/stat"; echo "parent $parent"'
RUNNER = f"{RUNNER_PID}\n{RUNNER_PARENT}"
#: a script that says its runner and waits until the test calls :meth:`Task.release`
HELD = f"{RUNNER_PID}\nwhile [ ! -e release ]; do sleep 0.05; done"
REAL_IDLE_SHARE = quiet.IDLE_SHARE


async def parent_of_runner(host: RunnerHost, pyz: Path, work_dir: Path) -> int:
    """Run a task; the pid of its runner's parent (the fork server's, or ours if direct)."""
    task = await run(host, pyz, work_dir, RUNNER)
    return int(task.said("parent "))


async def fork_server(host: RunnerHost, other_than: int | None = None, *, limit: float = 30) -> int:
    """The pid of the host's fork server, once one is ready (and is not ``other_than``)."""
    for _ in range(int(limit / 0.05)):  # bounded polling
        server = host.fork_pool.server
        if server is not None and server.pid != other_than:
            return server.pid
        await asyncio.sleep(0.05)
    raise AssertionError("no runner fork server was started")


def fork_servers() -> list[int]:
    """The fork servers running as children of this process (started by any host)."""
    found = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE and child.cmdline()[-1:] == ["--fork-server"]:
                found.append(child.pid)
    return found


async def none_started(*hosts: RunnerHost) -> None:
    """Give quiet moments their chance, then check that no fork server was started."""
    await asyncio.sleep(4 * quiet.QUIET_SECONDS)
    assert all(host.fork_pool.server is None for host in hosts)
    assert fork_servers() == []


def gone(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_gone(pid: int, what: str) -> None:
    for _ in range(600):
        if gone(pid):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} (pid {pid}) is still running")


async def descendants(runner: psutil.Process, sleeps: int) -> list[psutil.Process]:
    """The runner's tree, once the script has started its ``sleeps`` sleep commands."""

    def started() -> bool:
        with contextlib.suppress(psutil.Error):
            tree = runner.children(recursive=True)
            return sum(process.name() == "sleep" for process in tree) >= sleeps
        return False

    await asyncio.to_thread(wait_for, started, 30, "the script's sleeps")
    return runner.children(recursive=True)


async def warm_fork_server(host: RunnerHost, pyz: Path, tmp_path: Path) -> int:
    """Run one task, after which the host forks runners from a fork server: its pid."""
    await run(host, pyz, tmp_path / "work" / "t1-1", "true")
    return await fork_server(host)


async def forked_task(
    host: RunnerHost, pyz: Path, tmp_path: Path, sleeps: int
) -> tuple[int, Task, psutil.Process, list[psutil.Process]]:
    """A task forked by the fork server whose script sleeps in ``sleeps`` processes: the fork
    server's pid, the task, its runner, and the runner's tree."""
    server = await warm_fork_server(host, pyz, tmp_path)
    body = f"{RUNNER_PID}\n" + "sleep 300 &\n" * (sleeps - 1) + "sleep 300"
    task = Task(host, pyz, tmp_path / "work" / "t2-1", body)
    runner = psutil.Process(int(await task.saying("runner ")))
    assert runner.ppid() == server
    return server, task, runner, await descendants(runner, sleeps)


@pytest.fixture(autouse=True)
def busy_machine_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork servers start when this process is quiet even if the machine is busy (other
    tests running beside these); the machine's share is tested on its own below."""
    monkeypatch.setattr(quiet, "IDLE_SHARE", 0.0)


@pytest.fixture
def pyz(tmp_path: Path, runner_build: RunnerBuild) -> Path:
    """A copy of the runner build that a test may replace."""
    path = tmp_path / "runners" / runner_build.path.name
    path.parent.mkdir()
    shutil.copy(runner_build.path, path)
    return path


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
        assert mine != theirs
        assert sorted(fork_servers()) == sorted([mine, theirs])
    finally:
        (tmp_path / "work" / "long-1" / "release").touch()
        await other.terminate_all()


async def test_fork_servers_are_started_only_when_the_machine_is_mostly_idle(
    host: RunnerHost, pyz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quiet, "IDLE_SHARE", REAL_IDLE_SHARE)
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


AGENT_STAND_IN = """
import asyncio, sys
from pathlib import Path
from octo_appliance.agent import quiet
from octo_appliance.agent.runner_host import RunnerHost

quiet.IDLE_SHARE = 0.0  # the machine may be busy with other tests

async def main():
    host = RunnerHost()
    pyz, root, then = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    async def emit(event):
        message = str(event.get("message", ""))
        if event.get("stream") == "stdout" and message.startswith("runner "):
            print(message, flush=True)

    async def run(name, body):
        work = root / name
        work.mkdir(parents=True)
        document = {"protocol": 1, "command": "run-script", "variables": [],
                    "arguments": {"syntax": "bash", "body": body, "cancel_grace_seconds": 1},
                    "work_dir": str(work)}
        await host.run(pyz, document, work_dir=work, task_id=name, emit=emit, kill_grace=5)

    await run("t1-1", "true")
    while host.fork_pool.server is None:
        await asyncio.sleep(0.05)
    print("server", host.fork_pool.server.pid, flush=True)
    if then == "busy":
        await run("t2-1", 'echo "runner $PPID"; sleep 300')
    await asyncio.sleep(600)

asyncio.run(main())
"""


class AgentStandIn:
    """A process playing the agent: one task, then its fork server, then maybe a long task."""

    def __init__(self, pyz: Path, work: Path, then: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", AGENT_STAND_IN, str(pyz), str(work), then],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def said(self, prefix: str) -> int:
        """The pid on the stand-in's next line, which starts with ``prefix``."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 60)
        assert line.startswith(prefix), line
        return int(line[len(prefix) :])

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


async def test_an_idle_fork_server_ends_with_its_agent(pyz: Path, tmp_path: Path) -> None:
    """The agent is SIGKILLed: its idle fork server (control socket at end-of-file) ends."""
    agent = AgentStandIn(pyz, tmp_path / "work", "idle")
    try:
        server = await agent.said("server ")
        assert psutil.Process(server).ppid() == agent.process.pid
    finally:
        agent.kill()
    await wait_gone(server, "the idle fork server of the killed agent")


async def test_a_forked_runner_is_cancelled_when_its_agent_dies(pyz: Path, tmp_path: Path) -> None:
    """The agent is SIGKILLed mid-script: its fork server ends, so the runner gets its
    parent-death signal and cancels the script."""
    agent = AgentStandIn(pyz, tmp_path / "work", "busy")
    try:
        server = await agent.said("server ")
        runner = psutil.Process(await agent.said("runner "))
        assert runner.ppid() == server
        tree = await descendants(runner, 1)
    finally:
        agent.kill()
    for pid in [server, runner.pid, *(process.pid for process in tree)]:
        await wait_gone(pid, "a process of the killed agent's task")
