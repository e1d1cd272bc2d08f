"""The rig of tests/engine/test_acquisition.py: an in-memory feed, real agent processes
(listening and polling, dialled through the appliance's own transports and agent network) and
the built-in worker, with the appliance's side on an event loop in a thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import random
import threading
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from octo_appliance.agent.home import Home
from octo_appliance.builds.runner import RunnerBuild
from octo_appliance.comms import CommsSettings, generate_identity
from octo_appliance.engine.acquisition import Acquirer, Transfer
from octo_appliance.plugin_api.transport_context import TransportContext, agent_context
from octo_appliance.transports.base import TargetAddress, Transport
from octo_appliance.transports.listening import ListeningTransport
from octo_appliance.transports.local import WORKER, LocalTransport
from octo_appliance.transports.network import AgentNetwork
from octo_appliance.transports.polling import PollingTransport
from tests.agent.support import AgentProcess, make_home

T = TypeVar("T")
MEMBER = 100_000
BIG = 200  # members: a ~20 MB package


# -- the feed stand-in -------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    package_id: str
    version: str
    sha256: str
    size: int
    file_name: str


class MemoryFeed:
    """Versions in memory, ascending as they are added; counts what the acquirer reads."""

    def __init__(self) -> None:
        self.content: dict[tuple[str, str], bytes] = {}
        self.records: dict[str, list[Record]] = {}
        self.reads: Counter[str] = Counter()
        self.opens: Counter[str] = Counter()

    def add(self, package_id: str, version: str, data: bytes) -> Record:
        record = Record(
            package_id,
            version,
            hashlib.sha256(data).hexdigest(),
            len(data),
            f"{package_id}.{version}.zip",
        )
        self.content[(package_id, version)] = data
        self.records.setdefault(package_id, []).append(record)
        return record

    def versions(self, package_id: str) -> list[Record]:
        return list(self.records.get(package_id, []))

    def open_plaintext(self, record: Record) -> BinaryIO:
        self.opens[record.version] += 1
        return io.BytesIO(self.content[(record.package_id, record.version)])

    def read_plaintext(self, record: Record) -> bytes:
        self.reads[record.version] += 1
        return self.content[(record.package_id, record.version)]


def random_members(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(MEMBER) for _ in range(count)]


# -- the appliance side: its agent network on a loop in a thread ----------------------------


class Rig:
    """Real agents (two listening, two polling, in one agent process) behind the appliance's
    agent network, plus the built-in worker; coroutines run on the rig's own loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.identity = generate_identity("appliance", ["127.0.0.1"])
        self.spool = root / "appliance-spool"
        self.spool.mkdir(parents=True)
        self.homes: dict[str, Home] = {}
        for name in ("listen-1", "listen-2", "poll-1", "poll-2"):
            home = Home(root / name)
            home.create_identity()
            self.homes[name] = home
        runner = RunnerBuild("0.0.0", "0" * 64, root / "no-runner.pyz", 0)  # none is run
        self.network = AgentNetwork(
            self.identity,
            runner,
            self._trust,
            settings=CommsSettings(spool_dir=self.spool),
            pickup_timeout=60,
        )
        self.local = LocalTransport(TransportContext("local", runner))
        self.local.configure(
            enabled=True, root=root / "worker", user=None, appliance_user_for_tests=True
        )
        self.transports: dict[str, Transport] = {
            "listening": ListeningTransport(agent_context("listening", self.network)),
            "polling": PollingTransport(agent_context("polling", self.network)),
            "local": self.local,
        }
        self.process: AgentProcess | None = None
        self.targets: dict[str, TargetAddress] = {WORKER.name: WORKER}

    def _trust(self) -> list[TargetAddress]:
        trusted = []
        for name, home in self.homes.items():
            identity = home.load_identity()
            style = "listening" if name.startswith("listen") else "polling"
            trusted.append(
                TargetAddress(
                    id=f"tgt_{name}",
                    name=name,
                    communication_style=style,
                    thumbprint=identity.thumbprint,
                    certificate=identity.cert_pem.decode(),
                )
            )
        return trusted

    def start(self) -> Rig:
        self.run(self.network.start("127.0.0.1", 0))
        for name, home in self.homes.items():
            mode = "listening" if name.startswith("listen") else "polling"
            make_home(
                home.root,
                name=name,
                mode=mode,
                appliance=self.identity,
                polling_address=f"127.0.0.1:{self.network.polling_port}",
            )
        self.process = AgentProcess(list(self.homes.values())).start()
        for name, home in self.homes.items():
            identity = home.load_identity()
            listening = name.startswith("listen")
            self.targets[name] = TargetAddress(
                id=f"tgt_{name}",
                name=name,
                communication_style="listening" if listening else "polling",
                uri=f"https://127.0.0.1:{self.process.listen_port(name)}" if listening else "",
                thumbprint=identity.thumbprint,
                certificate=identity.cert_pem.decode(),
            )
        return self

    def close(self) -> None:
        try:
            self.run(self.network.stop(), timeout=15)
        finally:
            if self.process is not None:
                self.process.close()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def transport_for(self, target: TargetAddress) -> Transport | None:
        return self.transports.get(target.communication_style)

    def cached(self, target: str, sha256: str) -> bytes | None:
        """What the target's cache holds under ``sha256`` (None: nothing)."""
        directory = self.root / "worker" / "cache" if target == WORKER.name else None
        if directory is None:
            directory = self.homes[target].cache_dir
        path = directory / sha256
        return path.read_bytes() if path.exists() else None


Line = tuple[str, str, str | None]


def acquire(
    rig: Rig,
    feed: MemoryFeed,
    record: Record,
    names: Sequence[str],
    *,
    parallelism: int = 10,
    delta_max_bytes: int = 512 * 1024 * 1024,
    transports: Any = None,
) -> tuple[dict[str, Transfer], list[Line]]:
    lines: list[Line] = []

    def log(level: str, message: str, target: TargetAddress | None) -> None:
        lines.append((level, message, target.name if target else None))

    acquirer = Acquirer(
        transports or rig.transport_for,
        feed,
        parallelism=parallelism,
        delta_max_bytes=delta_max_bytes,
        spool_dir=rig.spool,
    )
    targets = [rig.targets[name] for name in names]
    transfers = rig.run(acquirer.acquire(record, targets, log))
    return {t.target_name: t for t in transfers.values()}, lines


ALL = ("listen-1", "poll-1", "appliance")


def assert_small_deltas(
    rig: Rig, transfers: dict[str, Transfer], record: Record, content: bytes, *, base_version: str
) -> None:
    """Every target of ALL got ``record`` as a delta from ``base_version`` (under a tenth of
    the package) and now holds exactly ``content``."""
    for name in ALL:
        transfer = transfers[name]
        assert transfer.mode == "delta", transfer.message
        assert transfer.base_version == base_version
        assert transfer.bytes_sent < len(content) // 10
        assert rig.cached(name, record.sha256) == content
