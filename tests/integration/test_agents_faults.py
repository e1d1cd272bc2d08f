"""Faults with real processes: an agent killed mid-task, an appliance restarted under
connected agents, a cancelled script's process tree, a file transfer cut off half-way.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import psutil
import pytest

from octo_appliance.builds.runner import RunnerBuild
from octo_appliance.comms import CommsError, CommsSettings
from octo_appliance.transports.base import TargetAddress
from octo_appliance.transports.listening import ListeningTransport
from octo_appliance.transports.network import AgentNetwork
from tests.fleet import Fleet, running_fleet, wait_until

NAMES = ("listen-1", "poll-1", "poll-2")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("faults")) as fleet:
        agents = fleet.register_many(
            [("listen-1", "listening"), ("poll-1", "polling"), ("poll-2", "polling")]
        )
        fleet.start_agents(agents)  # one process each: one of them gets killed
        yield fleet


@pytest.fixture
def scratch(fleet: Fleet, request: pytest.FixtureRequest) -> Path:
    path = fleet.root / str(request.node.name)
    path.mkdir()
    return path


def by_name(task: dict[str, object]) -> dict[str, dict[str, object]]:
    return {row["target_name"]: row for row in task["targets"]}  # type: ignore[index,attr-defined]


def process_tree(shell_pid: int) -> list[psutil.Process]:
    """The script's shell, what it started, and the runner above it."""
    shell = psutil.Process(shell_pid)
    runner = shell.parent()
    assert runner is not None and "octo-runner" in " ".join(runner.cmdline())
    return [runner, shell, *shell.children(recursive=True)]


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def all_ended(procs: list[psutil.Process]) -> bool:
    return not alive(procs)


def test_cancel_kills_the_script_process_tree(fleet: Fleet, scratch: Path) -> None:
    body = """\
echo $$ > "#{Pids}/#{Octo.Machine.Name}.shell"
sleep 300 &
sleep 300 &
echo started > "#{Pids}/#{Octo.Machine.Name}.ready"
sleep 300 & sleep 300; wait
"""
    task_id = fleet.run_script(
        body, targets=["listen-1", "poll-2"], variables={"Pids": str(scratch)}
    )
    for name in ("listen-1", "poll-2"):
        wait_until((scratch / f"{name}.ready").exists, 30, f"{name}'s script to start")
    shells = {name: int((scratch / f"{name}.shell").read_text()) for name in ("listen-1", "poll-2")}

    def complete_trees() -> dict[str, list[psutil.Process]] | None:
        trees = {name: process_tree(pid) for name, pid in shells.items()}
        return trees if all(len(tree) == 6 for tree in trees.values()) else None

    # the runner, the script's shell and its four sleeps, on each target
    trees: dict[str, list[psutil.Process]] = wait_until(complete_trees, 10, "all four sleeps")

    response = fleet.api().post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 200, response.text
    task = fleet.wait_task(task_id, timeout=60)

    assert task["state"] == "canceled"
    assert {row["state"] for row in task["targets"]} == {"canceled"}
    for name, tree in trees.items():
        wait_until(functools.partial(all_ended, tree), 20, f"{name}'s processes to end")


@pytest.mark.slow
def test_kill_a_polling_agent_mid_task(fleet: Fleet, scratch: Path) -> None:
    """poll-1's agent dies (SIGKILL) while its script sleeps: that target fails within
    30 s saying the connection was lost; the others complete."""
    body = """\
if [ "#{Octo.Machine.Name}" = "poll-1" ]; then
  echo $$ > "#{Dir}/poll-1.shell"
  sleep 60
fi
echo "done on #{Octo.Machine.Name}"
"""
    victim = fleet.agents["poll-1"]
    task_id = fleet.run_script(body, roles=["web"], variables={"Dir": str(scratch)})
    wait_until((scratch / "poll-1.shell").exists, 30, "poll-1's script to start")
    left_behind = process_tree(int((scratch / "poll-1.shell").read_text()))

    fleet.kill_agent(victim)
    killed_at = time.monotonic()
    row = fleet.wait_target_state(task_id, "poll-1", ["failed"], timeout=40)
    noticed_after = time.monotonic() - killed_at
    task = fleet.wait_task(task_id)

    assert noticed_after < 30, f"noticed after {noticed_after:.1f} s"
    message = str(row["message"])
    assert (
        "lost the connection to target 'poll-1'" in message
        and "peer closed the connection" in message
    )
    assert task["state"] == "failed" and "poll-1" in task["error"]
    results = by_name(task)
    for name in ("listen-1", "poll-2"):
        assert results[name]["state"] == "success"
        assert f"done on {name}" in fleet.log_of(task_id, name)
    errors = [line["message"] for line in fleet.log(task_id) if line["level"] == "error"]
    assert any("poll-1" in line and "lost the connection" in line for line in errors)
    # the runner notices its agent died and stops the script (it does not run on unsupervised)
    wait_until(
        functools.partial(all_ended, left_behind), 20, "the dead agent's runner and script to end"
    )
    fleet.start_agents([victim])  # back for the next tests


@pytest.mark.slow
def test_appliance_restart_while_polling_agents_are_connected(fleet: Fleet) -> None:
    agents = list(fleet.agents.values())
    warmup = fleet.wait_task(fleet.run_script("echo before", roles=["web"]))
    assert warmup["state"] == "success"
    pids = {a.name: a.process.pid for a in agents if a.process is not None}
    ports = (fleet.server.port, fleet.server.banner.polling_port)
    offsets = {a.name: len(a.log_file.read_bytes()) for a in agents}

    server = fleet.restart_appliance()

    assert (server.port, server.banner.polling_port) == ports
    task = fleet.wait_task(fleet.run_script("echo after #{Octo.Machine.Name}", roles=["web"]), 90)
    assert task["state"] == "success", fleet.log(task["id"])
    assert {row["target_name"] for row in task["targets"]} == set(NAMES)
    for agent in agents:
        assert agent.process is not None and agent.process.pid == pids[agent.name]
        assert agent.process.process is not None and agent.process.process.poll() is None
        if agent.mode == "polling":  # they dialled the new appliance themselves
            since = agent.log_file.read_bytes()[offsets[agent.name] :].decode()
            assert "connected to" in since


# -- a transfer cut off half-way -------------------------------------------------------------


class CuttingProxy:
    """A TCP relay in front of an agent that drops both sides (RST) once ``limit`` bytes went
    towards the agent: the network failing in the middle of an upload."""

    def __init__(
        self, target_port: int, limit: int, before_cut: Callable[[], Awaitable[None]]
    ) -> None:
        self.target_port = target_port
        self.limit = limit
        self.before_cut = before_cut
        self.forwarded = 0
        self.cut = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        agent_r, agent_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, counted: bool) -> None:
            while not self.cut.is_set():
                data = await r.read(65536)
                if not data:
                    break
                if counted:
                    self.forwarded += len(data)
                w.write(data)
                await w.drain()
                if counted and self.forwarded >= self.limit:
                    await self.before_cut()
                    self.cut.set()
            for writer in (client_w, agent_w):
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                writer.transport.abort()

        await asyncio.gather(
            pump(client_r, agent_w, True), pump(agent_r, client_w, False), return_exceptions=True
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def test_a_transfer_cut_off_half_way_is_not_used(fleet: Fleet, tmp_path: Path) -> None:
    """The appliance's transport uploads a package to a real listening agent through a relay
    that fails half-way; the agent keeps no part of it and reports it absent, and the same
    upload over an intact connection then lands."""
    agent = fleet.agents["listen-1"]
    port = agent.listen_port
    assert port is not None
    package = tmp_path / "package.bin"
    package.write_bytes(os.urandom(8 * 1024 * 1024))
    sha256 = hashlib.sha256(package.read_bytes()).hexdigest()
    identity = fleet.appliance_identity()

    def address(port: int) -> TargetAddress:
        return TargetAddress(
            id=agent.target_id,
            name=agent.name,
            communication_style="listening",
            uri=f"https://127.0.0.1:{port}",
            thumbprint=agent.home.load_identity().thumbprint,
            certificate=agent.home.cert_file.read_text(),
        )

    def parts() -> list[Path]:
        return list(agent.home.tmp_dir.glob("*.part"))

    partial_sizes: list[int] = []

    async def agent_holds_a_partial() -> None:
        """Cut only once the agent has spooled part of the file (so there is one to drop)."""
        for _ in range(200):
            sizes = [p.stat().st_size for p in parts() if p.exists()]
            if sizes and max(sizes) >= 1024 * 1024:
                partial_sizes.append(max(sizes))
                return
            await asyncio.sleep(0.05)

    async def scenario() -> tuple[int, bool, bool]:
        runner = RunnerBuild("0.0.0", "0" * 64, package, 0)  # no runner is run here
        settings = CommsSettings(spool_dir=tmp_path)
        proxy = CuttingProxy(port, 2 * 1024 * 1024, agent_holds_a_partial)
        via_proxy = ListeningTransport(AgentNetwork(identity, runner, list, settings=settings))
        direct = ListeningTransport(AgentNetwork(identity, runner, list, settings=settings))
        try:
            cut_target = address(await proxy.start())
            assert not await via_proxy.has_file(cut_target, sha256)
            with pytest.raises(CommsError):
                await via_proxy.upload(cut_target, package, sha256, "package.bin")
            assert proxy.cut.is_set()
            for _ in range(100):  # the agent deletes its partial file once it sees the loss
                if not parts():
                    break
                await asyncio.sleep(0.1)
            present_after_cut = await direct.has_file(address(port), sha256)
            await direct.upload(address(port), package, sha256, "package.bin")
            present_after_retry = await direct.has_file(address(port), sha256)
            return proxy.forwarded, present_after_cut, present_after_retry
        finally:
            await proxy.close()
            await via_proxy.network.stop()
            await direct.network.stop()

    forwarded, present_after_cut, present_after_retry = asyncio.run(scenario())

    assert 2 * 1024 * 1024 <= forwarded < package.stat().st_size  # it really was half-way
    assert partial_sizes and partial_sizes[0] < package.stat().st_size
    assert not parts()
    assert present_after_cut is False
    assert present_after_retry is True
    stored = agent.home.cache_dir / sha256
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha256
