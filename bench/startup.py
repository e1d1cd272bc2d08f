"""Start time of ``octo-appliance``: the single executable and the development install beside it.

For each program, ``--runs`` times (median and best printed; the goals are checked on the
median):

- ``--help`` and ``version``: wall time from ``exec`` to exit, output to a pipe, and the CPU
  time it took (less sensitive to a busy machine than the wall time).
- ``--help, unpack``: the executable's very first start for a user, which unpacks the program
  into the cache (docs/executable-cache.md); each run with an empty cache. Once per build and
  user, so it has no goal; every other row runs with the cache filled.
- ``serve`` on a fresh data dir (new database, master key, certificate, admin user) and on
  the same data dir again: wall time from ``exec`` to the first ``200`` of
  ``GET /api/v1/health`` (polled over TLS every 10 ms on a port chosen beforehand, so nothing
  waits on the banner), and the CPU time the process tree had used by then; then SIGTERM.

The executable is ``dist/octo-appliance`` (``--binary`` to choose, built by
``build/build_appliance.sh``); its size is printed too. The development install is this
interpreter's ``-m octo_appliance``. Goals (issue 15, section 1): ``--help`` and ``version``
< 0.5 s, first health answer < 1.5 s, the executable no bigger than 37.8 MiB.

Usage: ``.venv/bin/python bench/startup.py [--runs 5] [--binary PATH] [--no-dev]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
from _repo import ROOT

from octo_appliance.testing import keep_key_beside

GOAL_CLI = 0.5
GOAL_HEALTH = 1.5
GOAL_SIZE_MIB = 37.8
HEALTH_REQUEST = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}


def time_command(argv: Sequence[str], cache: Path | None = None) -> tuple[float, float]:
    """Wall time and CPU time (user + system, of the process and what it waited for) of one
    run; ``cache``: the executable's cache folder for this run (default: the bench's own)."""
    env = clean_env()
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, timeout=120, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


def health_ok(port: int) -> bool:
    """One TLS ``GET /api/v1/health`` (the certificate is not checked: timing only)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(HEALTH_REQUEST)
            return tls.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def tree_cpu(process: psutil.Process) -> float:
    """User + system CPU seconds of ``process`` and its descendants so far."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def time_serve(command: Sequence[str], data_dir: Path, worker_dir: Path) -> tuple[float, float]:
    """From ``exec`` to the first healthy answer of ``serve`` on ``data_dir``: wall time, and
    the CPU time the process tree had used by then."""
    port = free_port()
    argv = [*command, "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"]
    argv += ["--polling-listen", "127.0.0.1:0"]
    env = clean_env()
    env["OCTO_WORKER_DIR"] = str(worker_dir)
    keep_key_beside(data_dir)  # never the machine's key file
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        while not health_ok(port):
            if process.poll() is not None:
                raise SystemExit(f"{' '.join(argv)} exited with {process.returncode}")
            if time.perf_counter() - started > START_TIMEOUT:
                raise SystemExit(f"{' '.join(argv)}: no health answer in {START_TIMEOUT} s")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        return elapsed, tree_cpu(psutil.Process(process.pid))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


Results = dict[str, list[tuple[float, float]]]


def measure(command: Sequence[str], runs: int, scratch: Path, frozen: bool) -> Results:
    """(wall, CPU) per run of each case."""
    results: Results = {"--help": [], "version": [], "serve, fresh": [], "serve, again": []}
    if frozen:
        results["--help, unpack"] = []
        time_command([*command, "--help"])  # fill the bench's cache: the rows time warm starts
    for run in range(runs):
        if frozen:
            empty = scratch / f"cache-{run}"
            results["--help, unpack"].append(time_command([*command, "--help"], empty))
            shutil.rmtree(empty)
        for what in ("--help", "version"):
            results[what].append(time_command([*command, what]))
        data_dir = scratch / f"data-{run}"
        worker_dir = scratch / f"worker-{run}"
        for what in ("serve, fresh", "serve, again"):
            results[what].append(time_serve(command, data_dir, worker_dir))
    return results


def report(name: str, results: Results) -> None:
    print(f"\n{name}")
    print(
        f"{'what':<14} {'median s':>9} {'best s':>8} {'CPU s':>7} {'goal s':>7} {'median/goal':>12}"
    )
    for what, pairs in results.items():
        goal = GOAL_CLI if what in ("--help", "version") else GOAL_HEALTH
        if what == "--help, unpack":
            goal = float("nan")
        wall = [w for w, _ in pairs]
        median = statistics.median(wall)
        cpu = statistics.median(c for _, c in pairs)
        print(
            f"{what:<14} {median:9.3f} {min(wall):8.3f} {cpu:7.3f} {goal:7.2f} "
            f"{median / goal:12.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--binary", type=Path, default=ROOT / "dist" / "octo-appliance")
    parser.add_argument("--no-dev", action="store_true", help="measure the executable only")
    args = parser.parse_args()
    programs: list[tuple[str, list[str]]] = []
    if args.binary.is_file():
        programs.append((f"executable {args.binary}", [str(args.binary.resolve())]))
        size = args.binary.stat().st_size / 2**20
        print(
            f"executable size: {size:.1f} MiB (goal <= {GOAL_SIZE_MIB} MiB, ratio "
            f"{size / GOAL_SIZE_MIB:.2f})"
        )
    else:
        print(f"no executable at {args.binary}: build it with bash build/build_appliance.sh")
    if not args.no_dev:
        programs.append(
            (
                "development install (python -m octo_appliance)",
                [sys.executable, "-m", "octo_appliance"],
            )
        )
    scratch = Path(tempfile.mkdtemp(prefix="octo-bench-startup-"))
    os.chmod(scratch, 0o755)  # the worker account (as root: octo-worker) must reach its dir
    # the executable unpacks into the bench's own cache, not the user's
    os.environ["XDG_CACHE_HOME"] = str(scratch / "cache")
    try:
        for index, (name, command) in enumerate(programs):
            frozen = index == 0 and args.binary.is_file()
            report(name, measure(command, args.runs, scratch / str(len(name)), frozen))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
