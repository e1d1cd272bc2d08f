"""Package fan-out: a 50 MB package to N targets plus an install script, against Ansible,
pyinfra and a plain shell loop (issue: "copy a 50 MB package to N targets").

The job (``bench/_job.py``, defined once): each target receives ``MyApp.1.0.0.zip`` (random,
incompressible, made once per bench run), extracts it into a fresh folder and runs
``find . -type f ... -exec sha256sum {} + > sha.txt && touch installed.marker`` there. At
N = 20 the scripts hash 1 GB. Every target is its own directory on this machine: for Octo an
agent's home (the package lands in its cache, the runner extracts it), for the others a
directory under the bench's temp root. After each run every target's ``sha.txt`` is checked
against the package's digests.

- **cold**: the targets are empty (untimed reset), so the package travels;
- **warm**: the same package is already there (no copy), the extraction and script run again;
  every tool's last extraction is removed first (untimed), so all start from the same files
  and the same memory history (``bench/first_touch.py``: why that matters on this VM).

Tools (``bench/_peers.py``, ``bench/_fanout_octo.py``):

- **floor**: bash starts N background jobs, each in its own session (``cp`` unless present,
  ``python -m zipfile -e``, the script) and ``wait``s: no orchestrator;
- **octo**: a real appliance and N agents; ``POST /api/v1/deployments`` (``force``) of a
  release whose one step is ``deploy-package`` with the script as its Deploy script, timed
  until ``GET /api/v1/tasks/{id}`` is final;
- **ansible** (ansible-core, ``ansible_connection=local``, ``-f N``) and **pyinfra** (local
  execution, ``--parallel N``): ``copy``/``files.put`` then ``shell``, installed from PyPI
  into ``bench/.peers-venv`` by this script; each run is one ``ansible-playbook``/``pyinfra``
  process, timed from start to exit.

The targets live on tmpfs when it has room (see :func:`pick_root`); bench/README.md lists
the other fairness choices. Each (tool, N) does cold then warm, ``--repeat`` times; the tools
take turns (the order rotates per repeat) so they see the same machine noise; the medians go
in the table with each tool's ratio to the floor and Octo's speed-up over the faster peer.
Goals (issue 14; N = 20 and 50, cold and warm): Octo within 1.25x of the floor, and Octo's
overhead (time minus the floor's) at most half of the faster peer's. Each run also prints the
CPU seconds per target the tool used (``_cpu``; for Octo split into appliance, agents and
runners). The machine has 2 cores and is shared: read ratios and CPU seconds, not seconds.

``--transport ssh`` (``bench/_fanout_ssh.py``): the same job to N SSH targets, all on one
sshd of the bench's own: Octo's ``ssh`` transport (no agents) beside Ansible's ``ssh``
connection and pyinfra's ``@ssh`` connector; the floor stays local. It also prints each
tool's overhead (time minus the floor) and Octo's as a share of the faster peer's (goal:
under half).

Usage::

    .venv/bin/python bench/fanout.py [--sizes 1,20,50] [--repeat 3] [--package-mb 50]
                                     [--only peers|octo] [--root DIR] [--transport agent|ssh]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import _cpu as cpu
import _repo  # noqa: F401  (the repository on sys.path, first)
from _job import MB, make_package
from _peers import Ansible, Floor, Pyinfra, ToolFailed, describe_commands, ensure_venv

#: issue 14: Octo within 1.25x of the floor, and its overhead (time minus the floor's) at
#: most half of the faster peer's, in every (N, phase) cell of one run
GOAL_VS_FLOOR = 1.25
GOAL_OVERHEAD_SHARE = 0.5
GOAL_SIZES = (20, 50)
PEERS = ("ansible", "pyinfra")


class Tool(Protocol):
    name: str

    def reset(self, n: int, cold: bool) -> None: ...

    def run(self, n: int) -> float: ...


@dataclass
class Result:
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    #: CPU seconds per target of each run (``_cpu``: every process of the tool)
    cold_cpu: list[float] = field(default_factory=list)
    warm_cpu: list[float] = field(default_factory=list)

    def median(self, phase: str) -> float | None:
        values = self.cold if phase == "cold" else self.warm
        return statistics.median(values) if values else None

    def cpu(self, phase: str) -> str:
        """The median CPU seconds per target of ``phase``'s runs."""
        values = self.cold_cpu if phase == "cold" else self.warm_cpu
        return f"{statistics.median(values):.3f}" if values else "-"

    def spread(self, phase: str) -> str:
        values = self.cold if phase == "cold" else self.warm
        return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes wants numbers like 1,20,50, not {text!r}"
        ) from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("--sizes wants numbers of targets of at least 1")
    return sizes


def pick_root(asked: Path | None, package_mb: int, count: int) -> Path | None:
    """Where the targets live: ``--root``, else /dev/shm when it has room for the largest
    run (Octo keeps a cached copy and two release folders per target), else the system's
    temp dir. On one shared disk the N targets' writes make the disk the bottleneck of every
    tool (the runs measured here varied 3x with it); real targets each have their own."""
    if asked is not None:
        return asked
    shm = Path("/dev/shm")
    need = package_mb * MB * (3 * count + 8)
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1.5 * need:
        return shm
    return None


def start_octo(root: Path, count: int, package: object, data_dir: Path) -> tuple[Tool | None, str]:
    """Octo's fleet, or None and why not (the peers still run)."""
    try:
        from _fanout_octo import Octo, Unavailable
    except Exception as exc:  # the Octo side is importable or not; the peers run anyway
        return None, f"octo: the bench's Octo side does not import: {exc!r}"
    octo = Octo(root, count, package, data_dir)  # type: ignore[arg-type]
    try:
        octo.start()
    except Unavailable as exc:
        octo.close()
        return None, f"octo: {exc}"
    except BaseException:
        octo.close()
        raise
    return octo, ""


def agent_tools(
    args: argparse.Namespace,
    tmp: Path,
    count: int,
    package: object,
    data_dir: Path,
    notes: dict[str, str],
) -> tuple[list[Tool], Tool | None]:
    """The tools of ``--transport agent``: floor, Octo with agents, the peers run locally."""
    tools: list[Tool] = [Floor(tmp, count, package)]  # type: ignore[arg-type]
    if args.only != "octo":
        versions = ensure_venv(tmp)
        print(
            "peers from PyPI in bench/.peers-venv: "
            + ", ".join(f"{k} {v}" for k, v in versions.items()),
            flush=True,
        )
        tools += [Ansible(tmp, count, package), Pyinfra(tmp, count, package)]  # type: ignore[arg-type]
    octo = None
    if args.only != "peers":
        print(f"starting the appliance and {count} agents ...", flush=True)
        octo, why_not = start_octo(tmp, count, package, data_dir)
        if octo is None:
            notes["octo"] = why_not.removeprefix("octo: ")
            print(why_not, flush=True)
        else:
            tools.insert(1, octo)
    for name, line in describe_commands().items():
        if any(tool.name == name for tool in tools):
            print(f"  {name}: {line}")
    return tools, octo


def ssh_tools(
    args: argparse.Namespace, tmp: Path, count: int, package: object, data_dir: Path
) -> tuple[list[Tool], Tool | None, dict[str, str], object]:
    """The tools of ``--transport ssh``: floor, Octo over SSH, the peers over SSH."""
    from _fanout_octo import Unavailable
    from _fanout_ssh import AnsibleSsh, OctoSsh, PyinfraSsh, SshServer, describe_ssh_commands

    server = SshServer(tmp)
    print(
        f"  sshd on 127.0.0.1:{server.sshd.port} ({server.sshd.host_key_fingerprint})", flush=True
    )
    tools: list[Tool] = [Floor(tmp, count, package)]  # type: ignore[arg-type]
    notes: dict[str, str] = {}
    if args.only != "octo":
        ensure_venv(tmp)
        tools += [
            AnsibleSsh(tmp, count, package, server),  # type: ignore[arg-type]
            PyinfraSsh(tmp, count, package, server),  # type: ignore[arg-type]
        ]
    octo: Tool | None = None
    if args.only != "peers":
        candidate = OctoSsh(tmp, count, package, data_dir, server)  # type: ignore[arg-type]
        print(f"starting the appliance and {count} SSH targets ...", flush=True)
        try:
            candidate.start()
            octo = candidate
            tools.insert(1, candidate)
        except Unavailable as exc:
            candidate.close()
            notes["octo"] = str(exc)
    for name, line in describe_ssh_commands().items():
        if any(tool.name == name for tool in tools):
            print(f"  {name}: {line}")
    return tools, octo, notes, server


def measure(
    tools: list[Tool], sizes: Sequence[int], repeat: int
) -> tuple[dict[tuple[str, int], Result], dict[str, str]]:
    results: dict[tuple[str, int], Result] = {}
    failed: dict[str, str] = {}
    for n in sizes:
        for turn in range(repeat):
            order = tools[turn % len(tools) :] + tools[: turn % len(tools)]
            for tool in order:
                if tool.name in failed:
                    continue
                result = results.setdefault((tool.name, n), Result())
                try:
                    for phase in ("cold", "warm"):
                        tool.reset(n, cold=phase == "cold")
                        os.sync()  # no write-back of the previous run lands on this one
                        before = cpu.sample()
                        seconds = tool.run(n)
                        roles = cpu.by_role(before, cpu.sample())
                        per_target = sum(roles.values()) / n
                        split = f" ({cpu.describe(roles, n)})" if len(roles) > 1 else ""
                        getattr(result, phase).append(seconds)
                        getattr(result, phase + "_cpu").append(per_target)
                        detail = getattr(tool, "last_detail", "")
                        print(
                            f"  N={n:<3} run {turn + 1}/{repeat}  {tool.name:<8} {phase}"
                            f"  {seconds:7.2f} s  cpu {per_target:.3f} s/target{split}  load"
                            f" {os.getloadavg()[0]:.1f}  {detail}".rstrip(),
                            flush=True,
                        )
                except ToolFailed as exc:
                    failed[tool.name] = str(exc)
                    print(f"  {tool.name} failed, left out from here on:\n{exc}", flush=True)
                tool.reset(n, cold=True)  # free the memory (tmpfs) before the next tool
    return results, failed


def ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base <= 0:
        return "-"
    return f"{value / base:.2f}x"


def print_table(
    results: dict[tuple[str, int], Result],
    names: Sequence[str],
    sizes: Sequence[int],
    notes: dict[str, str],
    repeat: int,
) -> None:
    print(f"\npackage fan-out, median of {repeat} run(s), seconds (min-max)\n")
    print(
        f"{'tool':<8} {'N':>3}  {'cold':>6} {'(min-max)':>13}  {'warm':>6} {'(min-max)':>13}"
        f"  {'cold/floor':>10} {'warm/floor':>10}  {'peer/octo cold':>18} {'peer/octo warm':>18}"
    )
    for name in names:
        if name in notes and not any((name, n) in results for n in sizes):
            print(f"{name:<8} {'-':>3}  {notes[name]}")
    for n in sizes:
        floor = results.get(("floor", n), Result())
        for name in names:
            result = results.get((name, n))
            if result is None or not (result.cold or result.warm):
                continue
            cold, warm = result.median("cold"), result.median("warm")
            speedups = ["", ""]
            if name == "octo":
                for index, phase in enumerate(("cold", "warm")):
                    peer = faster_peer(results, n, phase)
                    mine = result.median(phase)
                    speedups[index] = ratio(peer[1], mine) + f" ({peer[0]})" if peer else "-"
            line = (
                f"{name:<8} {n:>3}  {_fmt(cold):>6} {result.spread('cold'):>13}"
                f"  {_fmt(warm):>6} {result.spread('warm'):>13}"
                f"  {ratio(cold, floor.median('cold')):>10} {ratio(warm, floor.median('warm')):>10}"
                f"  {speedups[0]:>18} {speedups[1]:>18}"
            )
            print(line.rstrip())
        print()
    for key, note in notes.items():
        name = key.split("-")[0]  # several notes per tool: "octo", "octo-runner"
        if key != name or any((name, n) in results for n in sizes):
            print(f"{name}: {note}")
    print_goals(results, sizes)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def faster_peer(
    results: dict[tuple[str, int], Result], n: int, phase: str
) -> tuple[str, float] | None:
    medians = [
        (name, value)
        for name in PEERS
        if (value := results.get((name, n), Result()).median(phase)) is not None
    ]
    return min(medians, key=lambda item: item[1]) if medians else None


def overhead_share(mine: float, peer: float, floor: float) -> float:
    """Octo's time over the floor as a share of the peer's (inf when the peer has none)."""
    return (mine - floor) / (peer - floor) if peer > floor else float("inf")


def print_goals(results: dict[tuple[str, int], Result], sizes: Sequence[int]) -> None:
    lines = []
    for n in (s for s in sizes if s in GOAL_SIZES):
        octo = results.get(("octo", n))
        floor = results.get(("floor", n))
        if octo is None or floor is None:
            continue
        for phase in ("cold", "warm"):
            mine, base = octo.median(phase), floor.median(phase)
            if mine is None or base is None:
                continue
            vs_floor = mine / base
            text = (
                f"N={n} {phase}: octo/floor {vs_floor:.2f}x "
                f"({'met' if vs_floor <= GOAL_VS_FLOOR else 'missed'}, goal <= {GOAL_VS_FLOOR}x)"
                f"; cpu/target octo {octo.cpu(phase)} floor {floor.cpu(phase)} s"
            )
            peer = faster_peer(results, n, phase)
            if peer:
                share = overhead_share(mine, peer[1], base)
                text += (
                    f"; overhead octo {mine - base:.2f} s / {peer[0]} {peer[1] - base:.2f} s"
                    f" = {share:.2f} ({'met' if share <= GOAL_OVERHEAD_SHARE else 'missed'},"
                    f" goal <= {GOAL_OVERHEAD_SHARE})"
                )
            lines.append(text)
    if lines:
        print(f"goals (load average {os.getloadavg()[0]:.2f}): " + "\n       ".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[1, 20, 50], help="e.g. 1,20,50")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool, N and phase")
    parser.add_argument("--package-mb", type=int, default=50, help="package size in MiB")
    parser.add_argument(
        "--only",
        choices=("peers", "octo"),
        help="peers: floor, Ansible and pyinfra only (no appliance); octo: floor and Octo only",
    )
    parser.add_argument(
        "--transport",
        choices=("agent", "ssh"),
        default="agent",
        help="agent: Octo's agents, the peers run locally; ssh: everyone over one test sshd",
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="directory for the targets (default: /dev/shm when it has room, else $TMPDIR)",
    )
    args = parser.parse_args()
    if args.repeat < 1 or args.package_mb < 1:
        parser.error("--repeat and --package-mb must be at least 1")
    sizes: list[int] = args.sizes
    count = max(sizes)
    started, load = time.monotonic(), os.getloadavg()[0]
    notes: dict[str, str] = {}
    base = pick_root(args.root, args.package_mb, count)
    with (
        tempfile.TemporaryDirectory(prefix="octo-bench-fanout-", dir=base) as tmp_name,
        tempfile.TemporaryDirectory(prefix="octo-bench-fanout-data-") as data_name,
    ):
        tmp = Path(tmp_name)
        print(f"targets under {tmp}", flush=True)
        print(f"making the package: {args.package_mb} MiB of random data ...", flush=True)
        package = make_package(tmp / "package", args.package_mb)
        server = None
        if args.transport == "ssh":
            tools, octo, ssh_notes, server = ssh_tools(
                args, tmp, count, package, Path(data_name) / "data"
            )
            notes.update(ssh_notes)
        else:
            tools, octo = agent_tools(args, tmp, count, package, Path(data_name) / "data", notes)
        try:
            results, failed = measure(tools, sizes, args.repeat)
            placed = getattr(octo, "package_seconds", {})
            if placed:
                notes["octo"] = "package on all targets after (median s): " + ", ".join(
                    f"N={n} {phase} {statistics.median(values):.2f}"
                    for (n, phase), values in sorted(placed.items())
                )
            if getattr(octo, "saw_runner_dir", False):
                notes["octo-runner"] = (
                    "the Deploy script's working directory also held the runner's own .octo-*"
                    " folder while it ran (find listed it; the check leaves it out)"
                )
        finally:
            if octo is not None:
                octo.close()  # type: ignore[attr-defined]
            if server is not None:
                server.close()  # type: ignore[attr-defined]
        notes.update(
            {name: f"failed: {message.splitlines()[0]}" for name, message in failed.items()}
        )
    names = ["floor", "octo", *PEERS] if args.only != "peers" else ["floor", *PEERS]
    if args.only == "octo":
        names = ["floor", "octo"]
    print_table(results, names, sizes, notes, args.repeat)
    if args.transport == "ssh":
        from _fanout_ssh import print_overheads

        medians = {
            (name, n, phase): value
            for (name, n), result in results.items()
            for phase in ("cold", "warm")
            if (value := result.median(phase)) is not None
        }
        print_overheads(medians, sizes)
    print(
        f"\n{os.cpu_count()} cores; package {args.package_mb} MiB in {package.path.name}; "
        f"load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
        f"bench took {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
