"""What writing into memory costs on this machine, by whether the memory was just freed.

Found while chasing the warm fan-out's gap at N = 50 (docs/performance.md, "Memory the VM
backs afresh"): the same bytes written to tmpfs by the same number of processes cost several
times more system time when they land in memory the guest has not used lately than in memory
a deletion has just freed. This VM (Firecracker, ``virtio_balloon``, free page reporting,
``page_reporting.page_reporting_order`` on the kernel command line) hands memory it has not
touched, or that was reported free and given back, to the host, which backs it again on the
first write; the guest sees that as system time of whoever writes. The fan-out bench therefore
gives every tool the same memory history: each warm run starts after that tool's previous
extraction was removed (``_fanout_octo.Octo.reset``, ``_peers.Tool.reset``).

Each round, ``--writers`` processes at once each write ``--mb`` MiB to a file of their own
under ``--root`` in 64 KiB writes (what the runner's extraction and ``python -m zipfile -e``
do); the round's system and user CPU seconds are the children's. Rounds:

- **fresh**: the files of the round before are kept, so the writes need memory not used lately;
- **reused**: the round before's files are deleted first, so the writes reuse what that freed.

A first round, not counted, takes up memory freed before the bench started.

It prints each round and the ratio of the medians. Usage::

    .venv/bin/python bench/first_touch.py [--writers 50] [--mb 50] [--rounds 3] [--root /dev/shm]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

CHUNK = 64 * 1024


def write_round(directory: Path, writers: int, mb: int) -> tuple[float, float, float]:
    """``writers`` forked processes each write ``mb`` MiB; (system s, user s, wall s)."""
    directory.mkdir(parents=True)
    chunk = os.urandom(CHUNK)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    children = []
    for index in range(writers):
        pid = os.fork()
        if pid == 0:  # the child writes its file and leaves without Python's clean-up
            status = 0
            try:
                with open(directory / f"w{index:03d}", "wb") as out:
                    for _ in range(mb * 1024 * 1024 // CHUNK):
                        out.write(chunk)
            except BaseException:
                status = 1
            os._exit(status)
        children.append(pid)
    failed = sum(1 for pid in children if os.waitpid(pid, 0)[1] != 0)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if failed:
        raise SystemExit(f"{failed} writer(s) failed: is there room for {writers * mb} MiB?")
    return after.ru_stime - before.ru_stime, after.ru_utime - before.ru_utime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--mb", type=int, default=50, help="MiB each writer writes")
    parser.add_argument("--rounds", type=int, default=3, help="of each kind")
    parser.add_argument("--root", type=Path, default=Path("/dev/shm"))
    args = parser.parse_args()
    total_gb = args.writers * args.mb / 1024
    needed = args.writers * args.mb * 2**20 * (args.rounds + 2)
    if shutil.disk_usage(args.root).free < needed:
        raise SystemExit(f"{args.root} needs {needed / 2**30:.1f} GiB free; choose --root")
    base = Path(tempfile.mkdtemp(prefix="octo-bench-first-touch-", dir=args.root))
    results: dict[str, list[float]] = {"fresh": [], "reused": []}
    print(
        f"{args.writers} writers x {args.mb} MiB = {total_gb:.2f} GiB a round, to {args.root}",
        flush=True,
    )
    try:
        # not counted: it takes up memory freed before the bench started, which would make
        # the first fresh round a reused one
        write_round(base / "absorb", args.writers, args.mb)
        previous: Path | None = None
        # fresh, reused, fresh, reused, ...: a fresh round keeps the previous round's files
        # (and its own), a reused round deletes them first
        for number in range(2 * args.rounds):
            kind = "fresh" if number % 2 == 0 else "reused"
            if kind == "reused" and previous is not None:
                shutil.rmtree(previous)
            current = base / f"round{number}"
            system, user, wall = write_round(current, args.writers, args.mb)
            results[kind].append(system)
            print(
                f"  round {number + 1}  {kind:6}  system {system:5.2f} s  user {user:4.2f} s  "
                f"wall {wall:5.2f} s  ({system / total_gb:.2f} system s/GiB)",
                flush=True,
            )
            previous = current
    finally:
        shutil.rmtree(base, ignore_errors=True)
    fresh = statistics.median(results["fresh"])
    reused = statistics.median(results["reused"])
    print(
        f"median system time: fresh {fresh:.2f} s ({fresh / total_gb:.2f} s/GiB), "
        f"reused {reused:.2f} s ({reused / total_gb:.2f} s/GiB): fresh/reused "
        f"{fresh / reused if reused else float('inf'):.1f}x"
    )


if __name__ == "__main__":
    main()
