"""The appliance's send path: CPU seconds per GB to send a package over TLS.

The sender runs in a process of its own and measures its own CPU time (user + system, from
``resource.getrusage``, worker threads included) from its first byte to the receiver's
answer; the receivers are bench/receive.py's, in another process (their CPU is not counted
here: bench/receive.py measures it).

- **Octo**: ``Connection.call(..., upload=...)`` to a comms listener, as the acquirer sends a
  package: ``memory`` is a :class:`~octo_appliance.comms.KnownContent` (the fan-out's case:
  a package up to 256 MiB decrypted once and sent to every target with its digest known);
  ``stream`` a :class:`~octo_appliance.comms.KnownStream` (a larger package, read from a
  stream per target, its digest known); ``file`` a path on disk (read and hashed as sent).
- **floor**, in the same run: the same bytes from memory into a bare asyncio TLS connection
  (``Protocol`` with ``pause_writing``/``resume_writing``, no frames) in 1 MiB and 256 KiB
  writes, and a blocking ``ssl`` socket's ``sendall`` (no asyncio: OpenSSL writes straight to
  the socket, without the memory BIO that asyncio's TLS goes through).

    python bench/send.py --gb 1 [--dir /dev/shm] [--profile sender.txt]
    python bench/send.py --callgrind --gb 0.05 --chunk-mb 16 --dir /dev/shm

``--callgrind`` counts the senders' instructions instead of CPU seconds (valgrind, user
space only: the kernel's TCP work is not counted), repeatable however loaded the machine is.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import multiprocessing as mp
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _callgrind
import receive

from octo_appliance.comms.transfer import KnownContent, KnownStream

BEFORE_SECONDS_PER_GB = 1.3  # docs/performance.md: the appliance's CPU per GB sent, cold fan-out
OCTO = ("memory", "stream", "file")
FLOORS = ("asyncio 1 MiB writes", "asyncio 256 KiB writes", "blocking sendall 1 MiB")
MIB = 1024 * 1024


# -- the senders (each in its own process; returns its CPU seconds for ``rounds``) ----------


async def _octo_send(
    port: int, ids: dict[str, Any], source: Any, rounds: int, patient: bool
) -> float:
    conn = await receive.dial(port, ids, patient)
    try:
        await conn.call("begin")
        start = receive._cpu()
        for _ in range(rounds):
            await conn.call("put", upload=source, timeout=600)
        return receive._cpu() - start
    finally:
        conn.close()
        await conn.wait_closed()


class _Writer(asyncio.Protocol):
    """The floor's TLS client protocol: only write flow control."""

    def __init__(self) -> None:
        self.resumed: asyncio.Future[None] | None = None
        self.paused = False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)


def _client_context() -> ssl.SSLContext:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE  # the floor measures bytes, not trust
    return client


async def _floor_asyncio(port: int, data: bytes, rounds: int, write: int, done: Any) -> float:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(
        _Writer, "127.0.0.1", port, ssl=_client_context()
    )
    view = memoryview(data)
    start = receive._cpu()
    for _ in range(rounds):
        for offset in range(0, len(view), write):
            transport.write(view[offset : offset + write])
            if protocol.paused:
                protocol.resumed = loop.create_future()
                await protocol.resumed
    await loop.run_in_executor(None, done.get)  # the receiver has every byte
    used = receive._cpu() - start
    transport.abort()
    return used


def _floor_blocking(port: int, data: bytes, rounds: int, done: Any) -> float:
    view = memoryview(data)
    with _client_context().wrap_socket(socket.create_connection(("127.0.0.1", port))) as sock:
        start = receive._cpu()
        for _ in range(rounds):
            for offset in range(0, len(view), MIB):
                sock.sendall(view[offset : offset + MIB])
        done.get()
        return receive._cpu() - start


def _sender_process(
    ready: Any,
    results: Any,
    kind: str,
    port: int,
    ids: dict[str, Any],
    size: int,
    rounds: int,
    workdir: str,
    patient: bool,
    profile: str | None,
) -> None:
    data = os.urandom(size)
    run: Callable[[], float]
    if kind in OCTO:
        sha256 = hashlib.sha256(data).hexdigest()
        source: Any = KnownContent(data, sha256)
        if kind != "memory":
            path = source = Path(workdir) / "package.bin"
            path.write_bytes(data)
        if kind == "stream":
            source = KnownStream(functools.partial(path.open, "rb"), sha256)
        run = lambda: asyncio.run(_octo_send(port, ids, source, rounds, patient))  # noqa: E731
    elif kind == FLOORS[2]:
        run = lambda: _floor_blocking(port, data, rounds, ready)  # noqa: E731
    else:
        number, unit = kind.split()[1:3]  # "asyncio 256 KiB writes"
        write = int(number) * (MIB if unit == "MiB" else 1024)
        run = lambda: asyncio.run(_floor_asyncio(port, data, rounds, write, ready))  # noqa: E731
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        results.put(profiler.runcall(run))
        with open(profile, "w") as out:
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    else:
        results.put(run())


def send(
    kind: str,
    ids: dict[str, Any],
    size: int,
    rounds: int,
    workdir: str,
    wrap: str | None = None,
    profile: str | None = None,
) -> float:
    """CPU seconds per GB of the ``kind`` sender (Octo's ``memory``/``file``, or a floor)."""
    patient = wrap is not None
    octo = kind in OCTO
    if octo:
        receiver, args = receive._octo_process, (ids, workdir, None, patient)
    else:
        receiver, args = receive._floor_process, (ids, workdir, "receive", size * rounds)
    child, ready, received, patience = receive._receiver(receiver, args, None)
    ctx = mp.get_context("spawn")
    done, results = ctx.Queue(), ctx.Queue()
    try:
        got = ready.get(timeout=patience)
        port = got if octo else got[0]
        sender = ctx.Process(
            target=_sender_process,
            args=(done, results, kind, port, ids, size, rounds, workdir, patient, profile),
        )
        _callgrind.start(sender, wrap)
        if not octo:
            received.get(timeout=600 + 600 * patient)
            done.put("received")
        seconds = float(results.get(timeout=600 + 600 * patient))
        sender.join(600 if wrap else 60)
    finally:
        if octo:
            received.put("done")
        child.join(patience)
        for file in Path(workdir).glob("kept/*"):
            file.unlink()
    return seconds / (size * rounds / 1e9)


def _fresh(workdir: str) -> None:
    """The Octo receiver makes its own spool and kept directories."""
    for name in ("spool", "kept"):
        path = Path(workdir) / name
        if path.exists():
            for file in path.iterdir():
                file.unlink()
            path.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="how much to send in all")
    parser.add_argument("--chunk-mb", type=int, default=64, help="size of one upload")
    parser.add_argument("--dir", help="where the receivers write (default: the temp dir)")
    parser.add_argument("--profile", help="write the Octo (memory) sender's cProfile here")
    parser.add_argument(
        "--octo", default=",".join(OCTO), help="Octo sources to measure (comma-separated)"
    )
    parser.add_argument(
        "--one-floor", action="store_true", help=f"only the first floor ({FLOORS[0]})"
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count the senders' instructions per GB under valgrind instead (slow; use "
        "--gb 0.05 --chunk-mb 16): repeatable however loaded the machine is",
    )
    args = parser.parse_args()
    ids = receive.identities()
    size = args.chunk_mb * MIB
    rounds = max(1, round(args.gb * 1e9 / size))
    kinds = [*args.octo.split(","), *(FLOORS[:1] if args.one_floor else FLOORS)]
    with tempfile.TemporaryDirectory(prefix="octo-bench-send-", dir=args.dir) as workdir:
        if args.callgrind:
            count_instructions(kinds, ids, size, max(rounds, 2), workdir)
            return
        started = time.perf_counter()
        figures = {}
        for kind in kinds:
            _fresh(workdir)
            profile = args.profile if kind == "memory" else None
            figures[kind] = send(kind, ids, size, rounds, workdir, profile=profile)
        wall = time.perf_counter() - started
    print(f"load average: {receive.load()}; {rounds} x {args.chunk_mb} MiB per sender")
    print(f"  ({wall:.0f} s wall for all; receivers under {args.dir or tempfile.gettempdir()})")
    _report(figures, "s/GB", 1.0)
    print(f"  before this work, in the cold fan-out: ~{BEFORE_SECONDS_PER_GB} s/GB sent")


def _report(figures: dict[str, float], unit: str, scale: float) -> None:
    floor = figures[FLOORS[0]]
    for kind, value in figures.items():
        name = f"Octo sender ({kind})" if kind not in FLOORS else f"floor, {kind}"
        over = "" if kind in FLOORS else f"  {value / floor:.2f}x the asyncio floor"
        print(f"{name}: {value / scale:.2f} {unit}{over}")


def count_instructions(
    kinds: list[str], ids: dict[str, Any], size: int, rounds: int, workdir: str
) -> None:
    """Each sender under callgrind for one upload and for ``rounds``: the difference is the
    per-byte work (start-up, imports, the TLS handshake and the urandom data cancel out)."""
    per_gb: dict[str, float] = {}
    for kind in kinds:
        counts = []
        for count in (1, rounds):
            _fresh(workdir)
            script, out = _callgrind.wrapper(workdir, f"{kind.replace(' ', '-')}-{count}")
            send(kind, ids, size, count, workdir, wrap=script)
            counts.append(_callgrind.instructions(out))
        per_gb[kind] = (counts[1] - counts[0]) / ((rounds - 1) * size / 1e9)
    print(f"load average: {receive.load()} (instruction counts do not depend on it)")
    _report(per_gb, "G instructions/GB", 1e9)


if __name__ == "__main__":
    main()
