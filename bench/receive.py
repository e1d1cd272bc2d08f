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
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing as mp
import os
import resource
import socket
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import _repo  # noqa: F401 (puts this checkout on sys.path)

from octo_appliance import comms
from octo_appliance.comms.transfer import KnownContent

GOAL_SECONDS_PER_GB = 1.5
BEFORE_SECONDS_PER_GB = 3.2  # the packages issue's closing note (agent CPU per GB received)
FLOOR_WORK = ("receive", "receive+sha256", "receive+sha256+write")
PIECE = 1024 * 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- Octo: the comms listener -------------------------------------------------------------


async def _octo_receiver(ids: dict[str, Any], ready: Any, results: Any, workdir: Path) -> None:
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
        settings=comms.CommsSettings(spool_dir=spool),
    )
    ready.put(server.port)
    await asyncio.get_running_loop().run_in_executor(None, results.get)
    await server.close()


def _octo_process(
    ids: dict[str, Any], ready: Any, results: Any, workdir: str, profile: str | None
) -> None:
    run = _octo_receiver(ids, ready, results, Path(workdir))
    if not profile:
        asyncio.run(run)
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, run)
    with open(profile, "w") as out:
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)


async def _octo_send(port: int, ids: dict[str, Any], content: KnownContent, rounds: int) -> float:
    conn = await comms.connect(
        "127.0.0.1",
        port,
        comms.Identity(ids["appliance_cert"], ids["appliance_key"]),
        ids["agent_thumbprint"],
        hello=comms.LocalHello(role="appliance", id="bench"),
    )
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


def octo(
    ids: dict[str, Any], content: KnownContent, rounds: int, workdir: str, profile: Any
) -> float:
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_octo_process, args=(ids, ready, results, workdir, profile))
    child.start()
    try:
        return asyncio.run(_octo_send(ready.get(timeout=60), ids, content, rounds))
    finally:
        results.put("done")
        child.join(60)


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
    ids: dict[str, Any], ready: Any, results: Any, workdir: str, work: str, total: int
) -> None:
    asyncio.run(_floor_receiver(ids, ready, results, Path(workdir), work, total))


def floor(ids: dict[str, Any], data: bytes, rounds: int, workdir: str, work: str) -> float:
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    total = len(data) * rounds
    args = (ids, ready, results, workdir, work, total)
    child = ctx.Process(target=_floor_process, args=args)
    child.start()
    try:
        port, start = ready.get(timeout=60)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE  # the floor measures bytes, not trust
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port))) as sock:
            for _ in range(rounds):
                sock.sendall(data)
            end = results.get(timeout=600)
    finally:
        child.join(60)
    return float(end - start) / (total / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="how much to send in all")
    parser.add_argument("--chunk-mb", type=int, default=256, help="size of one upload")
    parser.add_argument("--dir", help="where the receivers write (default: the temp dir)")
    parser.add_argument("--profile", help="write the Octo receiver's cProfile here")
    args = parser.parse_args()
    appliance = comms.generate_identity("appliance", ["127.0.0.1"])
    agent = comms.generate_identity("agent", ["127.0.0.1"])
    ids = {
        "appliance_cert": appliance.cert_pem,
        "appliance_key": appliance.key_pem,
        "agent_cert": agent.cert_pem,
        "agent_key": agent.key_pem,
        "agent_thumbprint": agent.thumbprint,
    }
    data = os.urandom(args.chunk_mb * PIECE)
    content = KnownContent(data, hashlib.sha256(data).hexdigest())
    rounds = max(1, round(args.gb * 1e9 / len(data)))
    with tempfile.TemporaryDirectory(prefix="octo-bench-receive-", dir=args.dir) as workdir:
        octo_seconds = octo(ids, content, rounds, workdir, args.profile)
        for file in Path(workdir).glob("kept/*"):
            file.unlink()  # its page cache would weigh on the floor's writes
        floors = {work: floor(ids, data, rounds, workdir, work) for work in FLOOR_WORK}
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average: {load}; written under {args.dir or tempfile.gettempdir()}")
    print(f"Octo receiver, CPU per GB received, verified and stored: {octo_seconds:.2f} s/GB")
    print(f"  goal <= {GOAL_SECONDS_PER_GB} s/GB; before this work ~{BEFORE_SECONDS_PER_GB} s/GB")
    for work, seconds in floors.items():
        print(f"floor, bare TLS {work}: {seconds:.2f} s/GB")
    full = floors[FLOOR_WORK[-1]]
    print(
        f"Octo / floor: {octo_seconds / full:.2f}x (Octo's own cost {octo_seconds - full:.2f} s/GB)"
    )


if __name__ == "__main__":
    main()
