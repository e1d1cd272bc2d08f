"""The one-line agent install, from paste to a healthy target (issue 16, goal < 10 s).

Starts an appliance: by default this checkout serving the frozen agent of these sources from
``dist/agent-builds`` (built first when missing); ``--binary PATH``: the single executable and
the agent it embeds; ``--standin``: this checkout's agent under Python. Then ``--runs`` times
for each style (polling, listening): prints ``octo-appliance agent install-command`` (not
timed), runs the line with ``sh`` as root where no systemd runs (``--prefix`` a fresh
directory, ``--run-as root``) and times it to its exit, which comes only once the appliance
reports the target healthy; then ``--uninstall`` (not timed). The wall time is split at the
script's own lines: the agent downloaded and checked, registered, and healthy.

Usage: ``.venv/bin/python bench/oneliner.py [--runs 3] [--binary PATH | --standin]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _repo import ROOT

from octo_appliance.builds.agent import cached_build
from tests.agent_build_standin import put_standin_build, serve_env
from tests.fleet import Fleet
from tests.oneliner_support import PATH, install_command
from tests.ports import free_port

GOAL = 10.0
#: the script's lines that end each phase
MARKS = (("download", "installed agent"), ("register", "registered "), ("healthy", "is a healthy"))


def timed_install(command: str) -> dict[str, float]:
    """Run the line; seconds from the start to each phase's line and to the exit."""
    start = time.monotonic()
    process = subprocess.Popen(
        ["sh", "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": PATH, "HOME": "/root"},
    )
    assert process.stdout is not None
    marks: dict[str, float] = {}
    for line in process.stdout:
        for phase, text in MARKS:
            if text in line and phase not in marks:
                marks[phase] = time.monotonic() - start
    code = process.wait()
    marks["total"] = time.monotonic() - start
    if code != 0:
        raise SystemExit(f"the install failed: {process.stderr.read() if process.stderr else ''}")
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--binary", type=Path, help="the single executable to measure")
    parser.add_argument(
        "--standin", action="store_true", help="serve this checkout's agent under Python"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="octo-bench-oneliner-"))
    os.chmod(root, 0o755)
    builds = root / "agent-builds"
    if args.binary is not None:
        fleet = Fleet(root / "fleet", appliance_command=(str(args.binary),))
        label = f"appliance {args.binary} and the agent it embeds"
    elif args.standin:
        put_standin_build(builds)
        fleet = Fleet(root / "fleet", serve_env=serve_env(builds))
        label = "development install; agent: this checkout under Python (not the frozen build)"
    else:
        built = cached_build(ROOT / "dist" / "agent-builds")
        fleet = Fleet(root / "fleet", serve_env=serve_env(built.path.parents[1]))
        label = f"development install; agent: the frozen build ({built.size / 2**20:.1f} MiB)"
    try:
        results = measure(fleet, root, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(results, args.runs, label)
    return 0


def measure(fleet: Fleet, root: Path, runs: int) -> dict[str, list[dict[str, float]]]:
    """Each style ``runs`` times: the install timed, then uninstalled."""
    results: dict[str, list[dict[str, float]]] = {"polling": [], "listening": []}
    with fleet:
        for run in range(runs):
            for style, flags in (("polling", ["--poll"]), ("listening", ["--listen"])):
                prefix = root / f"{style}-{run}"
                extra = f" --prefix {prefix} --run-as root --name bench-{style}-{run}"
                if style == "listening":
                    port = free_port()
                    command = install_command(fleet, *flags, str(port))
                    extra += " --public-host 127.0.0.1"
                else:
                    command = install_command(fleet, *flags)
                results[style].append(timed_install(command + extra))
                subprocess.run(
                    ["sh", "-c", command + extra + " --uninstall"],
                    check=True,
                    capture_output=True,
                    env={"PATH": PATH, "HOME": "/root"},
                )
    return results


def report(results: dict[str, list[dict[str, float]]], runs: int, label: str) -> None:
    print(f"one-line install to a healthy target, {runs} run(s) each; {label}")
    print(f"{'style':<10} {'download':>9} {'register':>9} {'healthy':>9} {'best':>7}  goal")
    for style, timings in results.items():
        medians = {p: statistics.median(r.get(p, float("nan")) for r in timings) for p, _ in MARKS}
        best = min(r["total"] for r in timings)
        total = statistics.median(r["total"] for r in timings)
        verdict = "met" if total < GOAL else "MISSED"
        print(
            f"{style:<10} {medians['download']:>8.2f}s {medians['register']:>8.2f}s "
            f"{total:>8.2f}s {best:>6.2f}s  < {GOAL:g} s: {verdict}"
        )
    print("(seconds from the paste to the script's line, medians; 'healthy' is its exit)")


if __name__ == "__main__":
    sys.exit(main())
