"""The polling listener's TLS writes: CPU per GB sent through asyncio's ``SSLProtocol`` and
through :class:`~octo_appliance.comms.tlswrites.SlicedWrites` (16 KiB slices, so no idle
connection keeps an OpenSSL buffer the size of its largest message; docs/performance.md,
"The appliance's send path").

The accepting side sends ``--gb`` of random data in 256 KiB writes (the send path's DATA
pieces), pausing when asyncio says so; a blocking ``ssl`` socket in another process reads and
discards it. Each protocol runs in a fresh process (``--rounds`` alternating pairs) and prints
its own CPU (user + system) per GB, with the load average.

    .venv/bin/python bench/tls_slices.py [--gb 1] [--rounds 4] [--slice 16384]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
from asyncio import sslproto
from typing import Any

import _repo  # noqa: F401  (the repository on sys.path, first)

from octo_appliance.comms import tlswrites

PIECE = 256 * 1024


def _read_all(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw) as tls:
        buffer = bytearray(1 << 20)
        while tls.recv_into(buffer):
            pass


class _Sender(asyncio.Protocol):
    def __init__(self, gb: float, done: asyncio.Future[float]) -> None:
        self.gb, self.done = gb, done
        self.resumed: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        asyncio.get_running_loop().create_task(self._pump())

    def pause_writing(self) -> None:
        self.resumed = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)

    async def _pump(self) -> None:
        data = os.urandom(PIECE)
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(int(self.gb * (1 << 30) / PIECE)):
            self.transport.write(data)
            if self.resumed is not None and not self.resumed.done():
                await self.resumed
        after = resource.getrusage(resource.RUSAGE_SELF)
        self.transport.close()
        used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        self.done.set_result(used / self.gb)


async def _measure(kind: str, gb: float, cert_dir: str) -> float:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{cert_dir}/cert.pem", f"{cert_dir}/key.pem")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    protocol = tlswrites.SlicedWrites if kind == "sliced" else sslproto.SSLProtocol
    server = await loop.create_server(
        lambda: protocol(loop, _Sender(gb, done), context, None, server_side=True),  # type: ignore[arg-type]
        "127.0.0.1",
        0,
    )
    reader = mp.Process(target=_read_all, args=(server.sockets[0].getsockname()[1],))
    reader.start()
    try:
        return await done
    finally:
        server.close()
        await loop.run_in_executor(None, reader.join)  # the loop still flushes the last bytes


def _one(kind: str, gb: float, cert_dir: str, slice_bytes: int) -> None:
    tlswrites.SLICE = slice_bytes
    per_gb = asyncio.run(_measure(kind, gb, cert_dir))
    print(f"  {kind:8} {per_gb:.3f} CPU s/GB  (load {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--slice", type=int, default=tlswrites.SLICE, help="bytes per slice")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cert_dir:
        subprocess.run(
            [
                *(
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ),
                *("-nodes", "-keyout", f"{cert_dir}/key.pem", "-out", f"{cert_dir}/cert.pem"),
                *("-subj", "/CN=bench", "-days", "1"),
            ],
            check=True,
            capture_output=True,
        )
        print(f"{os.cpu_count()} cores; {args.gb} GB per run, 256 KiB writes, slice {args.slice}")
        for _ in range(args.rounds):
            for kind in ("asyncio", "sliced"):
                run = mp.get_context("spawn").Process(
                    target=_one, args=(kind, args.gb, cert_dir, args.slice)
                )
                run.start()
                run.join(timeout=120)
                if run.is_alive():
                    run.kill()
                    print(f"  {kind:8} did not finish in 120 s", file=sys.stderr)


if __name__ == "__main__":
    main()
