"""Helpers of ``bench/dispatch.py``: agent homes, their registration, agent processes, and
the appliance as seen from outside (API calls, task timings, RSS, open connections).

Agent identities are real homes (``Home.create_identity`` + ``agent.json``) run by real
``octo-agent run --home ...`` processes, several identities per process, as docs/agent.md
allows. Registration goes through ``POST /api/v1/targets/register``, the same request
``octo-agent register`` sends, issued from here so hundreds of targets do not each cost an
interpreter start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _repo  # noqa: F401  (the repository on sys.path, first)
import psutil

from octo_appliance import __version__
from octo_appliance.agent.home import AgentConfig, Home
from tests.agent.support import AgentProcess
from tests.serve_process import ServeProcess

FINAL_STATES = ("success", "failed", "canceled", "timed_out")
ENVIRONMENT = "Bench"
ROLE = "bench"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (every bench uses this one rule)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def reserve_ports(count: int) -> list[int]:
    """Free 127.0.0.1 ports for listening agents, which must register a fixed address.

    All are bound at once (so they differ) and released just before the agents bind them.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def create_key(data_dir: Path) -> str:
    args = [sys.executable, "-m", "octo_appliance", "api-key", "create"]
    args += ["--data-dir", str(data_dir), "--user", "admin", "--name", "bench"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1].strip()


def start_appliance(
    data_dir: Path,
    polling_listen: str = "127.0.0.1:0",
    settings: dict[str, str] | None = None,
    *,
    new_session: bool = False,
) -> ServeProcess:
    """``serve`` at log level info: its ``connection from`` lines time the polling hub.
    ``settings``: more ``OCTO_*`` variables (e.g. ``OCTO_TASK_CAP``); ``new_session``: in a
    session of its own (see :class:`AgentFleet`)."""
    env = {"OCTO_ADMIN_PASSWORD": "bench-admin-password", "OCTO_LOG_LEVEL": "info"}
    env.update(settings or {})
    server = ServeProcess(data_dir, polling_listen=polling_listen, env=env, new_session=new_session)
    return server.start()


@dataclass(frozen=True)
class AgentSpec:
    name: str
    mode: str  # polling | listening
    listen: str = ""


def mixed_specs(prefix: str, total: int) -> list[AgentSpec]:
    """``total`` agents named ``<prefix>-NNN``: every fifth listening (on a port reserved
    now), the others polling."""
    ports = iter(reserve_ports(total))
    return [
        AgentSpec(f"{prefix}-{i:03d}", "listening", f"127.0.0.1:{next(ports)}")
        if i % 5 == 4
        else AgentSpec(f"{prefix}-{i:03d}", "polling")
        for i in range(total)
    ]


def new_home(root: Path, spec: AgentSpec) -> Home:
    home = Home(root / spec.name)
    home.create_identity()
    return home


async def _register_all(
    server: ServeProcess, key: str, items: list[tuple[AgentSpec, Home]], concurrency: int
) -> None:
    api_cert = server.cert_file.read_text()
    gate = asyncio.Semaphore(concurrency)
    async with server.async_http2_client(key) as client:

        async def one(spec: AgentSpec, home: Home) -> None:
            identity = home.load_identity()
            body: dict[str, Any] = {
                "name": spec.name,
                "environments": [ENVIRONMENT],
                "roles": [ROLE],
                "communication_style": spec.mode,
                "thumbprint": identity.thumbprint,
                "certificate": identity.cert_pem.decode(),
                "agent_version": __version__,
            }
            if spec.mode == "listening":
                body["uri"] = f"https://{spec.listen}"
            async with gate:
                response = await client.post("/api/v1/targets/register", json=body)
            if response.status_code != 201:
                sys.exit(f"registering {spec.name} failed: {response.status_code} {response.text}")
            answer = response.json()
            home.save_config(
                AgentConfig(
                    name=spec.name,
                    mode=spec.mode,  # type: ignore[arg-type]
                    listen=spec.listen,
                    polling_address=answer["polling_address"] if spec.mode == "polling" else "",
                    server_url=server.url,
                    api_thumbprint=server.banner.thumbprint,
                    api_certificate=api_cert,
                    comms_thumbprint=answer["server_thumbprint"],
                    comms_certificate=answer["server_certificate"],
                    target_id=answer["id"],
                    environments=[ENVIRONMENT],
                    roles=[ROLE],
                    registered_at=datetime.datetime.now(datetime.UTC).isoformat(),
                )
            )

        await asyncio.gather(*(one(spec, home) for spec, home in items))


def register_agents(
    server: ServeProcess, key: str, root: Path, specs: Sequence[AgentSpec], concurrency: int = 8
) -> list[Home]:
    """Create a home per spec and register it through the API (environment ``Bench``)."""
    with server.http2_client(headers={"X-Api-Key": key}) as client:
        response = client.post("/api/v1/environments", json={"name": ENVIRONMENT})
        if response.status_code not in (201, 409):
            sys.exit(f"creating the environment failed: {response.status_code} {response.text}")
    items = [(spec, new_home(root, spec)) for spec in specs]
    started = time.monotonic()
    asyncio.run(_register_all(server, key, items, concurrency))
    print(
        f"  registered {len(items)} targets in {time.monotonic() - started:.1f} s "
        f"({concurrency} requests at a time)",
        flush=True,
    )
    return [home for _, home in items]


class AgentFleet:
    """Agent processes, each running ``per_process`` homes; closing stops every one.

    ``new_session``: each agent process in a session of its own. Under the kernel's scheduler
    autogroups a session gets one share of a busy machine, so agents sharing the bench's
    session would share one share among all targets (bench/README.md, fairness)."""

    def __init__(self, *, new_session: bool = False) -> None:
        self.processes: list[AgentProcess] = []
        self.new_session = new_session

    def start(
        self, homes: Sequence[Home], per_process: int, command: Sequence[str] = ()
    ) -> AgentFleet:
        """``command``: another ``octo-agent`` to start (default: the development install)."""
        groups = [list(homes[i : i + per_process]) for i in range(0, len(homes), per_process)]
        batch = [
            AgentProcess(group, log_level="WARNING", command=command, new_session=self.new_session)
            for group in groups
        ]
        self.processes += batch  # before starting: a failed start is still stopped
        # as many starting at once as there are cores: ten interpreters starting together
        # on a small machine make the first handshakes time out
        workers = max(1, min(len(batch), os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(p.start, 180.0) for p in batch]:
                future.result()
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU the agent processes have used so far (not their runners)."""
        total = 0.0
        for agent in self.processes:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(agent.pid).cpu_times()
                total += times.user + times.system
        return total

    def tree_cpu_seconds(self) -> float:
        """User + system CPU of the agent processes and everything under them: fork servers,
        runners and scripts (a process's children times hold the descendants it reaped)."""
        total = 0.0
        for agent in self.processes:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(agent.pid)
                for process in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        t = process.cpu_times()
                        total += t.user + t.system + t.children_user + t.children_system
        return total

    def fork_servers(self) -> int:
        """Children the agent processes keep between tasks: their runner fork servers."""
        count = 0
        for agent in self.processes:
            with contextlib.suppress(psutil.Error):
                count += len(psutil.Process(agent.pid).children())
        return count

    def wait_for_fork_servers(self, count: int, timeout: float = 120.0) -> float:
        """Wait until ``count`` fork servers are up (or ``timeout``); the seconds waited."""
        started = time.monotonic()
        while self.fork_servers() < count and time.monotonic() - started < timeout:
            time.sleep(0.2)
        return time.monotonic() - started

    def rss(self) -> int:
        """Resident bytes of the agent processes (not their runners or fork servers)."""
        total = 0
        for agent in self.processes:
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(agent.pid).memory_info().rss
        return total

    def settle(self, timeout: float = 120.0) -> float:
        """Wait until the machine is mostly idle (the agents' fork servers, started when
        quiet after the warm-up, are up): two 0.5 s readings under 15% CPU. The seconds."""
        started = time.monotonic()
        calm = 0
        while calm < 2 and time.monotonic() - started < timeout:
            calm = calm + 1 if psutil.cpu_percent(interval=0.5) < 15 else 0
        return time.monotonic() - started

    def close(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(max(1, len(self.processes))) as pool:
            list(pool.map(lambda p: p.close(), self.processes))
        self.processes.clear()

    def __enter__(self) -> AgentFleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# -- the appliance from outside --------------------------------------------------------------


def pid_of(server: ServeProcess) -> int:
    assert server.process is not None, "the appliance was not started"
    return server.process.pid


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children (serve is one process today)."""
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return int(total)


def established_on(pid: int, port: int) -> int:
    """TCP connections the process has accepted on ``port`` (the polling listener)."""
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def wait_established(pid: int, port: int, count: int, timeout: float) -> float:
    """Seconds until ``count`` polling sockets are established (from outside, psutil)."""
    started = time.monotonic()
    while established_on(pid, port) < count:
        if time.monotonic() - started > timeout:
            sys.exit(f"only {established_on(pid, port)} of {count} agents connected")
        time.sleep(0.1)
    return time.monotonic() - started


class EstablishedWatcher:
    """Samples the established polling sockets every 100 ms from another thread."""

    def __init__(self, pid: int, port: int, count: int) -> None:
        self.pid, self.port, self.count = pid, port, count
        self.seconds = float("nan")
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            sampled = time.monotonic()  # a sample of hundreds of sockets takes a while
            if established_on(self.pid, self.port) >= self.count:
                self.seconds = sampled - self._started
                return
            self._stop.wait(0.1)

    def stop(self, wait: float = 30.0) -> None:
        """Give the watcher ``wait`` seconds to see them all, then stop it."""
        self._thread.join(wait)
        self._stop.set()
        self._thread.join(5)


def hub_connections(server: ServeProcess) -> list[float]:
    """Epoch times of the polling listener's ``connection from`` log lines (hub attach)."""
    times = []
    for line in server.output().split("\nstderr:\n", 1)[-1].splitlines():
        if "octo_appliance.comms: connection from" in line:
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            times.append(stamp.timestamp())  # asctime is local time, like time.time()
    return times
