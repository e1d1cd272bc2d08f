"""Runners started ahead of their tasks (``octo_appliance.agent.spares``), with real runners.

The runner host keeps one runner per build started and waiting on stdin; a task takes it and
writes its request, and the next spare is started. These tests check that such a runner is
the same process a task would have started (flags, session, environment, parent death), that
it works in the task's work dir, and that spares are replaced, retired and killed.
"""

from __future__ import annotations

import asyncio
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
from octo_appliance.agent.spares import SPARE_CWD

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


async def run(host: RunnerHost, pyz: Path, work_dir: Path, body: str) -> Task:
    task = Task(host, pyz, work_dir, body)
    outcome = await task.running
    assert outcome["success"], outcome
    return task


async def spare_pid(host: RunnerHost, other_than: int | None = None) -> int:
    """The pid of the host's spare, once one has started (and is not ``other_than``)."""
    for _ in range(600):  # bounded polling, up to 30 s
        pids = [pid for pid in host.spares.pids() if pid != other_than]
        if pids:
            return pids[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no runner was started ahead of the next task")


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


@pytest.fixture(autouse=True)
def busy_machine_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spares start when this process is quiet even if the machine is busy (other tests
    running beside these); the machine's share is tested on its own below."""
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


RUNNER_PID = 'echo "runner $PPID"'
REAL_IDLE_SHARE = quiet.IDLE_SHARE


async def test_a_task_takes_the_runner_started_ahead(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    first = await run(host, pyz, tmp_path / "work" / "t1-1", RUNNER_PID)
    ahead = await spare_pid(host)
    assert ahead != int(first.said("runner "))
    assert psutil.Process(ahead).cwd() == str(SPARE_CWD)

    second = await run(host, pyz, tmp_path / "work" / "t2-1", f'{RUNNER_PID}\necho "pwd $PWD"')

    assert int(second.said("runner ")) == ahead
    assert second.said("pwd ") == str(second.work_dir)
    await wait_gone(ahead, "the runner of the finished task")
    assert await spare_pid(host, other_than=ahead) != ahead  # the next task's


async def test_the_runner_started_ahead_moves_into_the_work_dir(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    await run(host, pyz, tmp_path / "work" / "t1-1", "true")
    ahead = await spare_pid(host)

    body = f'{RUNNER_PID}\necho "cwd $(readlink /proc/$PPID/cwd)"'
    task = await run(host, pyz, tmp_path / "work" / "t2-1", body)

    assert int(task.said("runner ")) == ahead
    assert task.said("cwd ") == str(task.work_dir)


async def test_the_runner_started_ahead_is_started_as_a_task_would_start_it(
    host: RunnerHost, pyz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCTO_API_KEY", "must-not-reach-scripts")
    monkeypatch.setenv("OCTO_TEST_MARKER", "inherited")
    cold = await run(host, pyz, tmp_path / "work" / "t1-1", "true")
    assert cold.events
    ahead = psutil.Process(await spare_pid(host))

    assert ahead.cmdline() == [sys.executable, "-I", "-S", str(pyz)]
    assert os.getsid(ahead.pid) == ahead.pid and os.getpgid(ahead.pid) == ahead.pid
    assert ahead.ppid() == os.getpid()
    environment = ahead.environ()
    assert "OCTO_API_KEY" not in environment
    assert environment["OCTO_TEST_MARKER"] == "inherited"

    task = await run(
        host,
        pyz,
        tmp_path / "work" / "t2-1",
        'echo "key ${OCTO_API_KEY:-none}"\necho "marker $OCTO_TEST_MARKER"',
    )
    assert task.said("key ") == "none" and task.said("marker ") == "inherited"


async def test_a_cancelled_task_on_a_runner_started_ahead_loses_its_whole_tree(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    await run(host, pyz, tmp_path / "work" / "t1-1", "true")
    ahead = await spare_pid(host)
    task = Task(host, pyz, tmp_path / "work" / "t2-1", f"{RUNNER_PID}\nsleep 300 &\nsleep 300")
    for _ in range(600):
        if any(str(e.get("message", "")).startswith("runner ") for e in task.events):
            break
        await asyncio.sleep(0.05)
    assert int(task.said("runner ")) == ahead
    runner = psutil.Process(ahead)
    wait_for(lambda: len(runner.children(recursive=True)) >= 3, 30, "the two sleeps")
    tree = runner.children(recursive=True)

    task.running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task.running

    for process in [runner, *tree]:
        await wait_gone(process.pid, "a process of the cancelled task")
    next_one = await spare_pid(host, other_than=ahead)
    assert not gone(next_one)


async def test_runners_are_started_ahead_only_when_no_task_runs(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    """One identity's task ends while another's runs in the same process: its next runner
    waits until that one has ended too, so its start never competes with a task."""
    other = RunnerHost()
    release = tmp_path / "release"
    try:
        body = f'{RUNNER_PID}\nwhile [ ! -e "{release}" ]; do sleep 0.05; done'
        long = Task(other, pyz, tmp_path / "work" / "long-1", body)
        for _ in range(600):
            if long.events:
                break
            await asyncio.sleep(0.05)
        await run(host, pyz, tmp_path / "work" / "short-1", "true")

        assert not long.running.done()
        assert len(host.spares) == 0 and len(other.spares) == 0

        release.touch()
        assert (await long.running)["success"]
        await spare_pid(host)
        await spare_pid(other)
    finally:
        release.touch()
        await other.terminate_all()


async def test_runners_are_started_ahead_only_when_the_machine_is_mostly_idle(
    host: RunnerHost, pyz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quiet, "IDLE_SHARE", REAL_IDLE_SHARE)
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        await run(host, pyz, tmp_path / "work" / "t1-1", "true")
        await asyncio.sleep(4 * quiet.QUIET_SECONDS)  # four quiet moments, all CPUs busy

        assert len(host.spares) == 0
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    await spare_pid(host)


async def test_two_runners_per_build_serve_two_steps_in_a_row(pyz: Path, tmp_path: Path) -> None:
    class TwoAhead(RunnerHost):
        spares_per_build = 2

    host = TwoAhead()
    try:
        await run(host, pyz, tmp_path / "work" / "t1-1", "true")
        first = await spare_pid(host)
        second = await spare_pid(host, other_than=first)

        one = await run(host, pyz, tmp_path / "work" / "t2-1", RUNNER_PID)
        two = await run(host, pyz, tmp_path / "work" / "t2-2", RUNNER_PID)

        assert {int(one.said("runner ")), int(two.said("runner "))} == {first, second}
    finally:
        await host.terminate_all()


async def test_terminate_all_kills_the_idle_runner_and_starts_no_more(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    await run(host, pyz, tmp_path / "work" / "t1-1", "true")
    ahead = await spare_pid(host)

    await host.terminate_all()

    assert gone(ahead)
    assert host.spares.pids() == []
    task = await run(host, pyz, tmp_path / "work" / "t2-1", RUNNER_PID)
    assert int(task.said("runner ")) != ahead
    assert len(host.spares) == 0


async def test_an_idle_runner_that_dies_is_replaced(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    await run(host, pyz, tmp_path / "work" / "t1-1", "true")
    ahead = await spare_pid(host)

    os.kill(ahead, signal.SIGKILL)
    replacement = await spare_pid(host, other_than=ahead)

    task = await run(host, pyz, tmp_path / "work" / "t2-1", RUNNER_PID)
    assert int(task.said("runner ")) == replacement


async def test_a_runner_started_from_a_replaced_build_is_not_used(
    host: RunnerHost, pyz: Path, tmp_path: Path
) -> None:
    await run(host, pyz, tmp_path / "work" / "t1-1", "true")
    ahead = await spare_pid(host)

    replacement = pyz.with_name("new.partial")
    shutil.copy(pyz, replacement)
    os.replace(replacement, pyz)  # a new build at the same path, as the runner cache does
    task = await run(host, pyz, tmp_path / "work" / "t2-1", RUNNER_PID)

    assert int(task.said("runner ")) != ahead
    await wait_gone(ahead, "the runner started from the old build")


async def test_a_subclass_with_its_own_spawn_starts_runners_only_for_tasks(
    pyz: Path, tmp_path: Path
) -> None:
    class OwnSpawn(RunnerHost):
        async def spawn(self, pyz: Path, work_dir: Path) -> asyncio.subprocess.Process:
            return await super().spawn(pyz, work_dir)

    class OptedIn(OwnSpawn):
        prespawn = True

    from octo_appliance.transports.local import WorkerHost

    assert RunnerHost.prespawn and OptedIn.prespawn
    assert not OwnSpawn.prespawn and not WorkerHost.prespawn
    host = OwnSpawn()
    try:
        await run(host, pyz, tmp_path / "work" / "t1-1", "true")
        assert len(host.spares) == 0
    finally:
        await host.terminate_all()


AGENT_STAND_IN = """
import asyncio, sys
from pathlib import Path
from octo_appliance.agent import quiet
from octo_appliance.agent.runner_host import RunnerHost

async def main():
    host = RunnerHost()
    work = Path(sys.argv[2])
    work.mkdir()
    document = {"protocol": 1, "command": "run-script", "variables": [],
                "arguments": {"syntax": "bash", "body": "true"}, "work_dir": str(work)}
    async def emit(event):
        pass
    await host.run(Path(sys.argv[1]), document, work_dir=work, task_id="t", emit=emit,
                   kill_grace=5)
    while not host.spares.pids():
        await asyncio.sleep(0.05)
    print(host.spares.pids()[0], flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_an_idle_runner_ends_with_its_agent(pyz: Path, tmp_path: Path) -> None:
    """The agent is SIGKILLed: its idle runner (parent-death signal, stdin closed) ends."""
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT_STAND_IN, str(pyz), str(tmp_path / "work")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(agent.stdout.readline), 60)
        ahead = int(line)
        assert psutil.Process(ahead).ppid() == agent.pid
    finally:
        agent.kill()
        agent.wait()
    await wait_gone(ahead, "the idle runner of the killed agent")
