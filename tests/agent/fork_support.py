"""Helpers of the fork-server tests (tests/agent/test_runner_forks.py and
test_fork_server_agent_death.py): a task run with a bash script, and ways to find and wait for
the fork server, its runners and their processes."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import psutil

from octo_appliance.agent import quiet
from octo_appliance.agent.runner_host import RunnerHost

from .support import wait_for


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
