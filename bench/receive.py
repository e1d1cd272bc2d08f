"""The agent's receive path: CPU seconds per GB to receive, verify and store an upload.

Two processes over real TLS on 127.0.0.1: a receiver (the comms listener a listening agent
runs; its handler keeps each upload as the agent's cache does, by renaming the verified spool
file) and a sender (the appliance side, sending a package held in memory with its digest
known, as the acquirer does). The figure is the receiver's own CPU time (user + system, from
``resource.getrusage`` in that process, worker threads included) per GB received: far less
sensitive to a loaded machine than wall time.

Beside it, in the same run, the floor: the same bytes over TLS into a bare asyncio
``BufferedProtocol`` (no frames, no calls, one reused buffer), then nothing, SHA-256, or
SHA-256 and a write to the same directory — so each phase's cost shows on its own.

    python bench/receive.py --gb 1 [--dir /var/tmp] [--profile receiver.txt]
    python bench/receive.py --callgrind --gb 0.05 --chunk-mb 16 --dir /dev/shm

``--callgrind`` counts instructions instead of CPU seconds (valgrind, user space only): the
same however loaded the machine is, so two versions of the code compare where seconds cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing as mp
import os
import resource
import shutil
import socket
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import _callgrind
import _repo  # noqa: F401 (puts this checkout on sys.path)

from octo_appliance import comms
from octo_appliance.comms.transfer import KnownContent

GOAL_SECONDS_PER_GB = 1.5
BEFORE_SECONDS_PER_GB = 3.2  # the packages issue's closing note (agent CPU per GB received)
FLOOR_WORK = ("receive", "receive+sha256", "receive+sha256+write")
PIECE = 1024 * 1024


def _settings(patient: bool, **fields: Any) -> comms.CommsSettings:
    """Under callgrind a receiver runs ~50 times slower: no timeout may take it for dead."""
    if not patient:
        return comms.CommsSettings(**fields)
    return comms.CommsSettings(handshake_timeout=600, ping_interval=60, dead_after=900, **fields)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- Octo: the comms listener -------------------------------------------------------------


async def _octo_receiver(
    ids: dict[str, Any], ready: Any, results: Any, workdir: Path, patient: bool
) -> None:
    spool, kept = workdir / "spool", workdir / "kept"
    spool.mkdir()
    kept.mkdir()
    state = {"received": 0, "start": 0.0, "cpu": 0.0}

    async def handler(request: comms.IncomingRequest) -> Any:
        if request.method == "begin":
            state.update(received=0, start=_cpu())
            return {}
        if request.method == "report":
            return {"received": state["received"], "cpu": state["cpu"]}
        assert request.upload_path is not None
        size = request.upload_path.stat().st_size
        os.replace(request.upload_path, kept / f"package-{state['received']}")
        state["received"] += size
        state["cpu"] = _cpu() - state["start"]
        return {"size": size}

    server = await comms.serve(
        "127.0.0.1",
        0,
        comms.Identity(ids["agent_cert"], ids["agent_key"]),
        comms.TrustStore([ids["appliance_cert"]]),
        hello=comms.LocalHello(role="agent", id="bench"),
        handler=handler,
        settings=_settings(patient, spool_dir=spool),
    )
    ready.put(server.port)
    await asyncio.get_running_loop().run_in_executor(None, results.get)
    await server.close()


def _octo_process(
    ready: Any,
    results: Any,
    ids: dict[str, Any],
    workdir: str,
    profile: str | None,
    patient: bool = False,
) -> None:
    run = _octo_receiver(ids, ready, results, Path(workdir), patient)
    if not profile:
        asyncio.run(run)
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, run)
    with open(profile, "w") as out:
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)


async def dial(port: int, ids: dict[str, Any], patient: bool) -> comms.Connection:
    """The appliance's side of a comms connection to the bench's listener."""
    return await comms.connect(
        "127.0.0.1",
        port,
        comms.Identity(ids["appliance_cert"], ids["appliance_key"]),
        ids["agent_thumbprint"],
        hello=comms.LocalHello(role="appliance", id="bench"),
        settings=_settings(patient),
    )


async def _octo_send(
    port: int, ids: dict[str, Any], content: KnownContent, rounds: int, patient: bool
) -> float:
    conn = await dial(port, ids, patient)
    try:
        await conn.call("begin")
        start = time.perf_counter()
        for _ in range(rounds):
            await conn.call("put", upload=content, timeout=600)
        wall = time.perf_counter() - start
        report = (await conn.call("report")).result
    finally:
        conn.close()
        await conn.wait_closed()
    gigabytes = report["received"] / 1e9
    print(f"  Octo: {gigabytes:.2f} GB in {wall:.2f} s wall")
    return float(report["cpu"]) / gigabytes


def _receiver(target: Any, args: tuple[Any, ...], wrap: str | None) -> tuple[Any, Any, Any, int]:
    """A receiver process started with its two queues first (under callgrind with ``wrap``),
    the queues, and how many seconds to wait for it."""
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=target, args=(ready, results, *args))
    _callgrind.start(child, wrap)
    return child, ready, results, 600 if wrap else 60


def octo(
    ids: dict[str, Any],
    content: KnownContent,
    rounds: int,
    workdir: str,
    profile: Any,
    wrap: str | None = None,
) -> float:
    args = (ids, workdir, profile, wrap is not None)
    child, ready, results, patience = _receiver(_octo_process, args, wrap)
    try:
        port = ready.get(timeout=patience)
        return asyncio.run(_octo_send(port, ids, content, rounds, wrap is not None))
    finally:
        results.put("done")
        child.join(patience)


# -- the floor: bare TLS into one buffer ---------------------------------------------------


async def _floor_receiver(
    ids: dict[str, Any], ready: Any, results: Any, workdir: Path, work: str, total: int
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key = workdir / "floor-cert.pem", workdir / "floor-key.pem"
    cert.write_bytes(ids["agent_cert"])
    key.write_bytes(ids["agent_key"])
    context.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[float] = loop.create_future()
    digest = hashlib.sha256()
    out = (workdir / "floor.out").open("wb")

    class Receiver(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buffer = bytearray(PIECE)
            self.view = memoryview(self.buffer)
            self.filled = self.received = 0

        def get_buffer(self, sizehint: int) -> memoryview:
            return self.view[self.filled :]

        def buffer_updated(self, nbytes: int) -> None:
            self.filled += nbytes
            self.received += nbytes
            if self.filled == PIECE:
                self.filled = 0
                if work != "receive":
                    digest.update(self.buffer)
                if work == "receive+sha256+write":
                    out.write(self.buffer)
            if self.received >= total and not finished.done():
                finished.set_result(_cpu())

    server = await loop.create_server(Receiver, "127.0.0.1", 0, ssl=context)
    ready.put((server.sockets[0].getsockname()[1], _cpu()))
    results.put(await finished)
    out.close()
    (workdir / "floor.out").unlink()
    server.close()


def _floor_process(
    ready: Any, results: Any, ids: dict[str, Any], workdir: str, work: str, total: int
) -> None:
    asyncio.run(_floor_receiver(ids, ready, results, Path(workdir), work, total))


def floor(
    ids: dict[str, Any],
    data: bytes,
    rounds: int,
    workdir: str,
    work: str,
    wrap: str | None = None,
) -> float:
    total = len(data) * rounds
    child, ready, results, patience = _receiver(_floor_process, (ids, workdir, work, total), wrap)
    try:
        port, start = ready.get(timeout=patience)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE  # the floor measures bytes, not trust
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port))) as sock:
            for _ in range(rounds):
                sock.sendall(data)
            end = results.get(timeout=600 + patience)
    finally:
        child.join(patience)
    return float(end - start) / (total / 1e9)


def identities() -> dict[str, Any]:
    """The two sides' certificates and keys (PEM) and the agent's thumbprint, picklable for
    the spawned processes."""
    appliance = comms.generate_identity("appliance", ["127.0.0.1"])
    agent = comms.generate_identity("agent", ["127.0.0.1"])
    return {
        "appliance_cert": appliance.cert_pem,
        "appliance_key": appliance.key_pem,
        "agent_cert": agent.cert_pem,
        "agent_key": agent.key_pem,
        "agent_thumbprint": agent.thumbprint,
    }


def load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="how much to send in all")
    parser.add_argument("--chunk-mb", type=int, default=256, help="size of one upload")
    parser.add_argument("--dir", help="where the receivers write (default: the temp dir)")
    parser.add_argument("--profile", help="write the Octo receiver's cProfile here")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count the receivers' instructions per GB under valgrind instead (slow; use "
        "--gb 0.25 or so): repeatable however loaded the machine is",
    )
    args = parser.parse_args()
    ids = identities()
    data = os.urandom(args.chunk_mb * PIECE)
    content = KnownContent(data, hashlib.sha256(data).hexdigest())
    rounds = max(1, round(args.gb * 1e9 / len(data)))
    if args.callgrind:
        with tempfile.TemporaryDirectory(prefix="octo-bench-receive-", dir=args.dir) as workdir:
            count_instructions(ids, content, max(rounds, 2), workdir)
        return
    with tempfile.TemporaryDirectory(prefix="octo-bench-receive-", dir=args.dir) as workdir:
        octo_seconds = octo(ids, content, rounds, workdir, args.profile)
        for file in Path(workdir).glob("kept/*"):
            file.unlink()  # its page cache would weigh on the floor's writes
        floors = {work: floor(ids, data, rounds, workdir, work) for work in FLOOR_WORK}
    print(f"load average: {load()}; written under {args.dir or tempfile.gettempdir()}")
    print(f"Octo receiver, CPU per GB received, verified and stored: {octo_seconds:.2f} s/GB")
    print(f"  goal <= {GOAL_SECONDS_PER_GB} s/GB; before this work ~{BEFORE_SECONDS_PER_GB} s/GB")
    for work, seconds in floors.items():
        print(f"floor, bare TLS {work}: {seconds:.2f} s/GB")
    full = floors[FLOOR_WORK[-1]]
    print(
        f"Octo / floor: {octo_seconds / full:.2f}x (Octo's own cost {octo_seconds - full:.2f} s/GB)"
    )


def count_instructions(
    ids: dict[str, Any], content: KnownContent, rounds: int, workdir: str
) -> None:
    """Each receiver under callgrind for one upload and for ``rounds``: the difference is the
    per-byte work (start-up, imports and the TLS handshake cancel out)."""
    per_gb: dict[str, float] = {}
    extra_gb = (rounds - 1) * len(content) / 1e9
    for name in ("octo", "floor"):
        counts = []
        for count in (1, rounds):
            script, out = _callgrind.wrapper(workdir, f"{name}-{count}")
            if name == "octo":
                octo(ids, content, count, workdir, None, script)
                for file in Path(workdir).glob("kept/*"):
                    file.unlink()
                shutil.rmtree(Path(workdir) / "spool")
                shutil.rmtree(Path(workdir) / "kept")
            else:
                floor(ids, bytes(content), count, workdir, FLOOR_WORK[-1], script)
            counts.append(_callgrind.instructions(out))
        per_gb[name] = (counts[1] - counts[0]) / extra_gb
    print(f"load average: {load()} (instruction counts do not depend on it)")
    print(f"Octo receiver: {per_gb['octo'] / 1e9:.2f} G instructions per GB received")
    print(f"floor (bare TLS receive+sha256+write): {per_gb['floor'] / 1e9:.2f} G instructions/GB")
    print(
        f"Octo / floor: {per_gb['octo'] / per_gb['floor']:.2f}x "
        f"(Octo's own {(per_gb['octo'] - per_gb['floor']) / 1e9:.2f} G instructions/GB)"
    )


if __name__ == "__main__":
    main()
