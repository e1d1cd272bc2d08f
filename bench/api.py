"""API throughput and latency: authenticated ``GET /api/v1/projects`` (1,000 projects, pages of 50).

Starts a real ``octo-appliance serve`` (SQLite by default, ``--database`` for PostgreSQL),
creates 1,000 projects, then loads it from a separate process:

- HTTP/2: ``h2load`` (nghttp2's C load generator; Debian package ``nghttp2-client``), 10
  concurrent clients, each its own TLS connection; per-request latencies from its log file.
- HTTP/3: an aioquic client process with 10 concurrent streams on one QUIC connection.

The floor, measured in the same run with the same clients: ``GET /api/v1/health`` (same
server, TLS, middleware and worker-thread hop; no authentication, no database on SQLite, at
most one ``SELECT 1`` a second on PostgreSQL). Ratios compare the projects
endpoint with the floor and with the goals of issue 2 (1,500 req/s, p99 < 20 ms over HTTP/2).

Usage: ``.venv/bin/python bench/api.py [--requests 20000] [--clients 10] [--database URL]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _repo  # noqa: F401  (the repository on sys.path, first)
from _fleet import percentile

from tests.h3client import H3Client
from tests.serve_process import ServeProcess

GOAL_RPS = 1500.0
GOAL_P99_MS = 20.0
PROJECTS = 1000
PAGE = 50


def project_paths() -> list[str]:
    return [f"/api/v1/projects?take={PAGE}&skip={skip}" for skip in range(0, PROJECTS, PAGE)]


def run_h2load(
    server: ServeProcess, paths: list[str], key: str | None, n: int, c: int
) -> dict[str, Any]:
    h2load = shutil.which("h2load")
    if h2load is None:
        sys.exit("h2load is missing: apt-get install -y nghttp2-client")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "h2load.log"
        args = [h2load, "-n", str(n), "-c", str(c), "-m", "1", "--log-file", str(log)]
        if key:
            args += ["-H", f"x-api-key: {key}"]
        args += [f"https://{server.host}:{server.port}{path}" for path in paths]
        started = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"h2load failed:\n{proc.stdout}\n{proc.stderr}")
        statuses: dict[str, int] = {}
        latencies = []
        for line in log.read_text().splitlines():
            _start, status, micros = line.split("\t")
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(int(micros) / 1000)
    rps = _rps_from_h2load(proc.stdout) or len(latencies) / wall
    return {
        "requests": len(latencies),
        "statuses": statuses,
        "rps": rps,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "protocol": "h2" if "h2" in proc.stdout else "?",
    }


def _rps_from_h2load(output: str) -> float | None:
    for line in output.splitlines():
        if line.startswith("finished in"):
            # "finished in 5.12s, 3906.25 req/s, 30.5MB/s"
            return float(line.split(",")[1].strip().split()[0])
    return None


async def _h3_load(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"x-api-key": args.key} if args.key else {}
    paths = json.loads(args.paths)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(args.n))
    async with H3Client(args.host, args.port, cafile=args.cafile) as client:

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                response = await client.get(paths[i % len(paths)], headers)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.c)))
        wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "statuses": {str(k): v for k, v in statuses.items()},
        "rps": len(latencies) / wall,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "protocol": "h3",
    }


def run_h3(
    server: ServeProcess, paths: list[str], key: str | None, n: int, c: int
) -> dict[str, Any]:
    """The HTTP/3 client runs in its own process, like h2load."""
    args = [
        sys.executable,
        __file__,
        "--h3-worker",
        "--host",
        server.host,
        "--port",
        str(server.port),
        "--cafile",
        str(server.cert_file),
        "--paths",
        json.dumps(paths),
        "--n",
        str(n),
        "--c",
        str(c),
    ]
    env = dict(os.environ)
    if key:
        env["OCTO_BENCH_KEY"] = key
    proc = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        sys.exit(f"HTTP/3 client failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def seed(server: ServeProcess, key: str) -> None:
    with server.http2_client(headers={"x-api-key": key}) as client:
        for i in range(PROJECTS):
            response = client.post("/api/v1/projects", json={"name": f"project-{i:04d}"})
            if response.status_code != 201:
                sys.exit(f"seeding failed: {response.status_code} {response.text}")
        page = client.get(f"/api/v1/projects?take={PAGE}").json()
        assert page["total"] == PROJECTS and len(page["items"]) == PAGE


def create_key(data_dir: Path, database: str | None) -> str:
    args = [
        sys.executable,
        "-m",
        "octo_appliance",
        "api-key",
        "create",
        "--data-dir",
        str(data_dir),
        "--user",
        "admin",
        "--name",
        "bench",
    ]
    if database:
        args += ["--database", database]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def row(label: str, result: dict[str, Any], floor: dict[str, Any] | None) -> str:
    ratio = f"{result['rps'] / floor['rps']:.2f}x" if floor else "-"
    return (
        f"{label:<28} {result['rps']:>9.0f} {result['p50']:>8.2f} {result['p99']:>8.2f} "
        f"{ratio:>10}  {result['statuses']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--h3-requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--database", default=None)
    parser.add_argument("--h3-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host"), parser.add_argument("--port", type=int)
    parser.add_argument("--cafile"), parser.add_argument("--paths")
    parser.add_argument("--n", type=int), parser.add_argument("--c", type=int)
    args = parser.parse_args()
    if args.h3_worker:
        args.key = os.environ.get("OCTO_BENCH_KEY")
        print(json.dumps(asyncio.run(_h3_load(args))))
        return

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = {"OCTO_ADMIN_PASSWORD": "bench-admin-password", "OCTO_LOG_LEVEL": "warning"}
        with ServeProcess(data_dir, database=args.database, env=env) as server:
            key = create_key(data_dir, args.database)
            print(f"seeding {PROJECTS} projects ...", flush=True)
            seed(server, key)
            paths = project_paths()
            n, c = args.requests, args.clients
            print(
                f"HTTP/2: h2load -n {n} -c {c}; HTTP/3: aioquic, {args.h3_requests} requests, "
                f"{c} streams",
                flush=True,
            )
            run_h2load(server, paths, key, min(n, 2000), c)  # warm-up
            h2_floor = run_h2load(server, ["/api/v1/health"], None, n, c)
            h2 = run_h2load(server, paths, key, n, c)
            h3_floor = run_h3(server, ["/api/v1/health"], None, args.h3_requests, c)
            h3 = run_h3(server, paths, key, args.h3_requests, c)

    backend = "PostgreSQL" if args.database else "SQLite"
    print()
    print(f"backend: {backend}; {os.cpu_count()} cores; client and server on this machine")
    print(f"{'case':<28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs floor':>10}  statuses")
    print(row("h2 floor GET /health", h2_floor, None))
    print(row("h2 GET /projects (auth)", h2, h2_floor))
    print(row("h3 floor GET /health", h3_floor, None))
    print(row("h3 GET /projects (auth)", h3, h3_floor))
    print()
    print(
        f"goal (HTTP/2): >= {GOAL_RPS:.0f} req/s -> {h2['rps'] / GOAL_RPS:.2f}x of goal; "
        f"p99 < {GOAL_P99_MS:.0f} ms -> measured {h2['p99']:.2f} ms "
        f"({'met' if h2['p99'] < GOAL_P99_MS else 'missed'})"
    )
    print(
        f"HTTP/3 vs HTTP/2 on /projects: {h3['rps'] / h2['rps']:.2f}x req/s "
        f"(the HTTP/3 client is Python; h2load is C)"
    )


if __name__ == "__main__":
    main()
