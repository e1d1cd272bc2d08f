"""Dispatch latency at the comms level, for ``bench/dispatch.py``.

This process plays the appliance with the appliance's own ``AgentNetwork`` and transports (the
real appliance has no no-op endpoint) and calls ``agent.info`` on two identities of one real
``octo-agent run`` process: a polling one (through the hub's queue) and a listening one (a
dialed connection). Their homes are written directly, trusting this process's identity, in
the layout docs/agent.md describes. The floor is a 256-byte echo over a plain Python TLS
socket to another process (``python bench/_latency.py CERT KEY`` runs that echo server).
Calls are interleaved in chunks of 100, so noise from a shared machine hits all three alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _fleet import AgentFleet, reserve_ports  # noqa: E402

from octo_appliance.agent.home import Home  # noqa: E402
from octo_appliance.builds.runner import RunnerBuild  # noqa: E402
from octo_appliance.comms import CommsSettings, Identity, generate_identity  # noqa: E402
from octo_appliance.plugin_api.transport_context import agent_context  # noqa: E402
from octo_appliance.transports.base import TargetAddress, Transport  # noqa: E402
from octo_appliance.transports.listening import ListeningTransport  # noqa: E402
from octo_appliance.transports.network import AgentNetwork  # noqa: E402
from octo_appliance.transports.polling import PollingTransport  # noqa: E402
from tests.agent.support import AgentProcess, make_home  # noqa: E402

ECHO_BYTES = 256


def _write_home(root: Path, name: str, mode: str, appliance: Identity, address: str) -> Home:
    """A registered home (through the agent tests' own helper); the target id is new each
    run, as a registration's would be."""
    return make_home(
        root / name,
        name=name,
        mode=mode,
        appliance=appliance,
        listen=address if mode == "listening" else "",
        polling_address=address if mode == "polling" else "",
        target_id=f"tgt_{name}_{secrets.token_hex(4)}",
        environments=["Bench"],
        roles=["bench"],
    )


def trust_loader(homes: list[tuple[str, Home]]) -> Callable[[], list[TargetAddress]]:
    """The agents of ``homes`` (style, home) as the appliance's trust loader gives them (a
    polling one must be a polling target to open a polling session)."""

    def trusted() -> list[TargetAddress]:
        out = []
        for style, home in homes:
            identity, config = home.load_identity(), home.require_registered()
            out.append(
                TargetAddress(
                    config.target_id,
                    config.name,
                    style,
                    thumbprint=identity.thumbprint,
                    certificate=identity.cert_pem.decode(),
                )
            )
        return out

    return trusted


async def start_network(
    tmp: Path, runner: RunnerBuild, appliance: Identity, homes: list[tuple[str, Home]]
) -> AgentNetwork:
    """The appliance's ``AgentNetwork`` in this process, trusting ``homes`` (filled later:
    call its ``reload_trust`` once they are written), listening on 127.0.0.1."""
    (tmp / "spool").mkdir(parents=True)
    network = AgentNetwork(
        appliance, runner, trust_loader(homes), settings=CommsSettings(spool_dir=tmp / "spool")
    )
    await network.start("127.0.0.1", 0)
    return network


class EchoClient:
    """A TLS connection to the echo server process: the floor of one round trip."""

    def __init__(self, cert_pem: bytes, port: int) -> None:
        self.cert_pem, self.port = cert_pem, port
        self.payload = os.urandom(ECHO_BYTES)

    async def open(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(cadata=self.cert_pem.decode())
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=context
        )

    async def round_trip(self) -> None:
        self.writer.write(self.payload)
        await self.writer.drain()
        await self.reader.readexactly(ECHO_BYTES)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


async def _echo_serve(cert: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
    server.close()


async def _time_calls(
    transport: Transport | None, target: TargetAddress | None, echo: EchoClient, n: int
) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        if transport is not None and target is not None:
            await transport.info(target, timeout=30.0)
        else:
            await echo.round_trip()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def measure(
    tmp: Path, runner: RunnerBuild, calls: int, idle: int = 0, per_process: int = 250
) -> dict[str, list[float]]:
    """Round-trip milliseconds: ``polling``, ``listening`` (agent.info) and ``echo``; with
    ``idle`` more polling agents (``per_process`` identities per agent process) connected
    and idle meanwhile, so the listener also carries their keepalives."""
    appliance = generate_identity("octo-bench-appliance")
    homes: list[tuple[str, Home]] = []
    network = await start_network(tmp, runner, appliance, homes)
    [listen_port] = reserve_ports(1)
    poller = _write_home(
        tmp / "agents", "poll-1", "polling", appliance, f"127.0.0.1:{network.polling_port}"
    )
    listener = _write_home(
        tmp / "agents", "listen-1", "listening", appliance, f"127.0.0.1:{listen_port}"
    )
    homes += [("polling", poller), ("listening", listener)]
    address = f"127.0.0.1:{network.polling_port}"
    extra = [
        _write_home(tmp / "idle", f"idle-{i:04d}", "polling", appliance, address)
        for i in range(idle)
    ]
    homes += [("polling", home) for home in extra]
    await network.reload_trust()
    fleet = AgentFleet()
    echo_cert = generate_identity("octo-bench-echo")
    echo_cert.save(tmp / "echo.pem", tmp / "echo.key")
    echo_proc = subprocess.Popen(
        [sys.executable, __file__, str(tmp / "echo.pem"), str(tmp / "echo.key")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    agent = AgentProcess([poller, listener], log_level="WARNING")
    try:
        assert echo_proc.stdout is not None
        echo = EchoClient(echo_cert.cert_pem, int(echo_proc.stdout.readline()))
        await echo.open()
        await asyncio.to_thread(agent.start)
        if extra:
            await asyncio.to_thread(fleet.start, extra, per_process)
            while len(network.hub.connected_agents) < idle + 1:
                await asyncio.sleep(0.2)
        p_id, l_id = poller.load_identity(), listener.load_identity()
        targets = {
            "polling": (
                PollingTransport(agent_context("polling", network)),
                TargetAddress("tgt_p", "poll-1", "polling", thumbprint=p_id.thumbprint),
            ),
            "listening": (
                ListeningTransport(agent_context("listening", network)),
                TargetAddress(
                    "tgt_l",
                    "listen-1",
                    "listening",
                    uri=f"https://127.0.0.1:{listen_port}",
                    thumbprint=l_id.thumbprint,
                    certificate=l_id.cert_pem.decode(),
                ),
            ),
        }
        samples: dict[str, list[float]] = {"polling": [], "listening": [], "echo": []}
        for name in samples:  # warm-up: connections, caches, first-call paths
            transport, target = targets.get(name, (None, None))
            await _time_calls(transport, target, echo, 100)
        chunk = 100  # interleaved, so noise from the shared machine hits all three alike
        for _ in range(max(1, calls // chunk)):
            for name in samples:
                transport, target = targets.get(name, (None, None))
                samples[name] += await _time_calls(transport, target, echo, chunk)
        await echo.close()
        return samples
    finally:
        await network.stop()
        await asyncio.to_thread(agent.close)
        await asyncio.to_thread(fleet.close)
        if echo_proc.stdin is not None:
            echo_proc.stdin.close()
        echo_proc.wait(10)


if __name__ == "__main__":
    asyncio.run(_echo_serve(Path(sys.argv[1]), Path(sys.argv[2])))
