"""A fork server ends with its agent (``octo_appliance.agent.forkpool``): an agent killed
with SIGKILL leaves no fork server behind, idle or with a runner forked from it, whose
script is then cancelled by its parent-death signal."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psutil

from .fork_support import descendants, wait_gone
from .support import ROOT

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
