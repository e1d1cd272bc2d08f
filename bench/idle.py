"""What idle polling connections cost the appliance's listener: CPU and memory (issue 14, 4).

This process plays the appliance with the appliance's own ``AgentNetwork`` (as
``bench/_latency.py`` does); N real polling agent identities in ``octo-agent run`` processes
(``--per-process`` each) connect to it and then do nothing. Measured with all connected: this
process's CPU over ``--window`` seconds (nothing is asked: keepalives only), its RSS per
connection (against before any connected), its asyncio tasks per connection, and the agent
processes' CPU over the same window. Figures are from a shared 2-core machine: the load
average is printed beside them; CPU seconds, not wall time, are what to compare.

Usage: ``.venv/bin/python bench/idle.py [--agents 1000,5000] [--per-process 250]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from pathlib import Path

import _latency
import _repo  # noqa: F401  (the repository on sys.path, first)
import psutil
from _fleet import AgentFleet

from octo_appliance.agent.home import Home
from octo_appliance.builds.runner import prepare_runner
from octo_appliance.comms import generate_identity

KB = 1024


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


async def measure(tmp: Path, count: int, per_process: int, window: float) -> None:
    runner = prepare_runner(tmp / "runner")
    appliance = generate_identity("octo-bench-appliance")
    homes: list[tuple[str, Home]] = []
    network = await _latency.start_network(tmp, runner, appliance, homes)
    address = f"127.0.0.1:{network.polling_port}"
    homes += [
        (
            "polling",
            _latency._write_home(tmp / "idle", f"idle-{i:05d}", "polling", appliance, address),
        )
        for i in range(count)
    ]
    await network.reload_trust()
    me = psutil.Process()
    rss_before, tasks_before = me.memory_info().rss, len(asyncio.all_tasks())
    fleet = AgentFleet()
    try:
        started = time.monotonic()
        await asyncio.to_thread(fleet.start, [home for _, home in homes], per_process)
        while len(network.hub.connected_agents) < count:
            await asyncio.sleep(0.2)
        connect_s = time.monotonic() - started
        assert network.polling_server is not None
        pushed = network.polling_server.admission.dropped
        await asyncio.sleep(3.0)  # the first pings, trust and version writes settle
        cpu0, agents0 = time.process_time(), fleet.cpu_seconds()
        await asyncio.sleep(window)
        cpu = time.process_time() - cpu0
        agents = fleet.cpu_seconds() - agents0
        rss, tasks = me.memory_info().rss, len(asyncio.all_tasks())
        print(
            f"{count} polling connections ({-(-count // per_process)} agent processes), all "
            f"connected {connect_s:.1f} s after the agents started ({pushed} handshakes "
            f"dropped by admission meanwhile); load {_load()}\n"
            f"  listener CPU while idle: {cpu / window * 100:.1f}% of a core "
            f"({cpu / window / count * 1e6:.1f} us per connection per second)\n"
            f"  agents' CPU while idle: {agents / window * 100:.1f}% of a core "
            f"({agents / window / count * 1e6:.1f} us per connection per second)\n"
            f"  listener RSS {rss / KB / KB:.0f} MB ({rss_before / KB / KB:.0f} MB before): "
            f"{(rss - rss_before) / count / KB:.1f} KB per connection\n"
            f"  asyncio tasks {tasks} ({tasks_before} before): "
            f"{(tasks - tasks_before) / count:.2f} per connection",
            flush=True,
        )
    finally:
        await network.stop()
        await asyncio.to_thread(fleet.close)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1000,5000", help="comma-separated sizes")
    parser.add_argument("--per-process", type=int, default=250)
    parser.add_argument("--window", type=float, default=20.0, help="idle seconds measured")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    for count in (int(n) for n in args.agents.split(",")):
        with tempfile.TemporaryDirectory(prefix="octo-bench-idle-") as tmp:
            asyncio.run(measure(Path(tmp), count, args.per_process, args.window))


if __name__ == "__main__":
    main()
