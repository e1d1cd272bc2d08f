"""The frozen octo-agent against its budgets (issue 16): executable size, idle RSS, start to
"connected".

1. **Size** of the one-file executable (budget 20 MB), as the appliance serves it: the build of
   today's sources from the build cache (made by PyInstaller first when missing, a few minutes).
2. **Start to connected**: a registered polling agent is started (``octo-agent run``) against
   a real appliance (``octo-appliance serve`` of this checkout on 127.0.0.1), and timed until
   its log says ``agent: connected to`` (budget 1 s); median of ``--runs`` starts. The one-file
   executable unpacks itself to a temporary directory at every start, which is most of it.
   Peer: the same agent from the development install (``python -m octo_appliance.agent``).
3. **Idle RSS** of that agent once connected and left alone for ``--idle`` seconds (budget
   40 MB): the Python process that does the work (the one-file bootloader's child), and the
   whole tree's proportional set size (bootloader, agent and the runner fork server it starts
   when quiet: PSS counts pages they share once). Peer: the development install's.

Usage: ``.venv/bin/python bench/agent_build.py [--runs N] [--idle S] [--executable PATH]``
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import _repo  # noqa: F401  (the repository on sys.path, first)
import psutil
from startup import tree_cpu

from octo_appliance.builds.agent import cached_build
from tests.agent.support import AgentProcess
from tests.conftest import AGENT_BUILDS
from tests.fleet import AGENT_COMMAND, Fleet, FleetAgent, running_fleet

BUDGET_SIZE_MB = 20.0
BUDGET_RSS_MB = 40.0
BUDGET_CONNECT_S = 1.0
MB = 1024 * 1024
CONNECTED = "agent: connected to "


def _connected(agent: FleetAgent) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return CONNECTED in agent.log_file.read_text(encoding="utf-8", errors="replace")
    return False


def start_to_connected(
    fleet: Fleet, agent: FleetAgent, command: Sequence[str]
) -> tuple[float, float]:
    """Seconds from starting ``octo-agent run`` to its first "connected" log line, and the CPU
    seconds the agent used to get there (steadier than wall time on a shared machine)."""
    agent.log_file.unlink(missing_ok=True)
    process = AgentProcess([agent.home], log_level="INFO", command=command)
    started = time.perf_counter()
    process.start()
    while not _connected(agent):
        if time.perf_counter() - started > 60:
            process.stop()
            raise SystemExit(f"the agent did not connect within 60 s:\n{process.stderr()}")
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    cpu = tree_cpu(psutil.Process(process.pid))
    process.stop()
    return elapsed, cpu


def idle_memory(agent: FleetAgent, command: Sequence[str], idle: float) -> tuple[float, float]:
    """(RSS of the agent's Python process, PSS of its whole tree), MB, after ``idle`` s."""
    process = AgentProcess([agent.home], log_level="INFO", command=command)
    process.start()
    try:
        while not _connected(agent):
            time.sleep(0.05)
        time.sleep(idle)
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
        # the one-file bootloader's child is the interpreter; a development agent is the root
        worker = next((p for p in tree[1:] if p.ppid() == root.pid), root)
        if "forkserver" in " ".join(worker.cmdline()):
            worker = root
        rss = worker.memory_info().rss / MB
        pss = sum(p.memory_full_info().pss for p in tree) / MB
    finally:
        process.stop()
    return rss, pss


def measure(fleet: Fleet, name: str, command: Sequence[str], runs: int, idle: float) -> dict:
    fleet.agent_command = tuple(command)
    agent = fleet.register(name, "polling")
    starts = [start_to_connected(fleet, agent, command) for _ in range(runs)]
    times = [wall for wall, _ in starts]
    rss, pss = idle_memory(agent, command, idle)
    return {
        "connect": statistics.median(times),
        "cpu": statistics.median(cpu for _, cpu in starts),
        "all": times,
        "rss": rss,
        "pss": pss,
    }


def row(figure: str, value: float, unit: str, budget: float | None, peer: float | None) -> str:
    verdict = "" if budget is None else ("ok" if value <= budget else "OVER")
    budget_text = "" if budget is None else f"{budget:g}"
    ratio = "" if not peer else f"{value / peer:.2f}x"
    return f"{figure:<34} {value:>9.2f} {unit:<4} {budget_text:>7} {verdict:>5} {ratio:>9}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="starts timed per agent (median)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before RSS")
    parser.add_argument("--executable", type=Path, help="a built octo-agent (default: cache)")
    args = parser.parse_args(argv)

    executable = args.executable or cached_build(AGENT_BUILDS).path
    size = executable.stat().st_size / MB
    print(f"octo-agent: {executable}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-agent-") as root,
        running_fleet(Path(root)) as fleet,
    ):
        print(f"timing {args.runs} starts of the frozen agent ...", flush=True)
        frozen = measure(fleet, "frozen", [str(executable)], args.runs, args.idle)
        print(f"timing {args.runs} starts of the development agent (peer) ...", flush=True)
        dev = measure(fleet, "development", AGENT_COMMAND, args.runs, args.idle)

    print()
    print(f"{'figure':<34} {'value':>9} {'unit':<4} {'budget':>7} {'':>5} {'vs peer':>9}")
    print(row("executable size", size, "MB", BUDGET_SIZE_MB, None))
    print(
        row("start to connected (median)", frozen["connect"], "s", BUDGET_CONNECT_S, dev["connect"])
    )
    print(row("CPU to connected (median)", frozen["cpu"], "s", None, dev["cpu"]))
    print(row("idle RSS (agent process)", frozen["rss"], "MB", BUDGET_RSS_MB, dev["rss"]))
    print(row("idle PSS (whole tree)", frozen["pss"], "MB", None, dev["pss"]))
    print()
    print("starts (s): frozen " + ", ".join(f"{t:.2f}" for t in frozen["all"]))
    print("            development " + ", ".join(f"{t:.2f}" for t in dev["all"]))
    print(
        f"peer (development install): connected in {dev['connect']:.2f} s, RSS {dev['rss']:.1f} "
        f"MB, tree PSS {dev['pss']:.1f} MB. Figures from a shared 2-core machine."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
