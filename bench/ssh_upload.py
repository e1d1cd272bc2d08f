"""The cold path of ``bench/fanout.py --transport ssh`` alone: one package pushed by the
``ssh`` transport to N targets on one test sshd, in this process, so its CPU time is the
appliance's side of the transfer (the package shared in memory with its SHA-256 known, as
acquisition hands it over). Prints wall time, this process's CPU seconds per GB sent and the
load average; ``--profile`` adds the functions that took the CPU (cProfile, cumulative).

    .venv/bin/python bench/ssh_upload.py --targets 20 --package-mb 50 [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from octo_appliance.builds.runner import prepare_runner
from octo_appliance.comms import KnownContent
from octo_appliance.plugin_api.transport_context import TransportContext
from octo_appliance.transports.base import TargetAddress
from octo_appliance.transports.ssh import SshTransport
from octo_appliance.transports.ssh.settings import (
    SshCredentials,
    SshTarget,
    parse_fingerprint,
)
from tests.sshd import Sshd


class Targets:
    def __init__(self) -> None:
        self.rows: dict[str, SshTarget] = {}

    def load(self, target_id: str) -> SshTarget:
        return self.rows[target_id]

    def record_host_key(self, target_id: str, fingerprint: str) -> None:
        """Never called: every target is pinned."""


async def push(sshd: Sshd, root: Path, count: int, data: KnownContent) -> tuple[float, float, str]:
    """Wall and CPU seconds of one push to ``count`` fresh targets (connections made first),
    and what the connections negotiated."""
    targets = Targets()
    transport = SshTransport(TransportContext("ssh", prepare_runner(root / "runner")))
    transport.configure(targets)
    addresses = []
    for n in range(count):
        target = SshTarget(
            id=f"t{n}",
            name=f"t{n}",
            host="127.0.0.1",
            port=sshd.port,
            user=sshd.user,
            fingerprint=parse_fingerprint(sshd.host_key_fingerprint),
            directory=str(root / f"t{n}"),
            credentials=SshCredentials(private_key=sshd.client_key),
        )
        targets.rows[target.id] = target
        addresses.append(TargetAddress(id=target.id, name=target.name, communication_style="ssh"))
    try:
        await asyncio.gather(*(transport.info(a) for a in addresses))
        assert transport.pool is not None
        pooled = await transport.pool.get(addresses[0].id)
        limits = (await pooled.sftp()).limits
        negotiated = (
            f"cipher {pooled.conn.get_extra_info('send_cipher')}, compression "
            f"{pooled.conn.get_extra_info('send_compression')}, SFTP writes of at most "
            f"{limits.max_write_len} bytes"
        )
        wall, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(
            *(transport.upload(a, data, data.sha256, "p.zip", length=len(data)) for a in addresses)
        )
        return time.monotonic() - wall, time.process_time() - cpu, negotiated
    finally:
        await transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--package-mb", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    raw = os.urandom(args.package_mb * 1024 * 1024)
    data = KnownContent(raw, hashlib.sha256(raw).hexdigest())
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(dir=base) as tmp, Sshd(Path(tmp) / "sshd") as sshd:
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        wall, cpu, negotiated = asyncio.run(push(sshd, Path(tmp), args.targets, data))
        if profiler is not None:
            profiler.disable()
        gigabytes = len(data) * args.targets / 1e9
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"{args.targets} targets x {args.package_mb} MiB = {gigabytes:.2f} GB: "
            f"{wall:.1f} s wall, {gigabytes / wall * 1000:.0f} MB/s; appliance CPU "
            f"{cpu:.1f} s = {cpu / gigabytes:.1f} CPU s per GB (load average {load}; "
            f"{os.cpu_count()} cores); {negotiated}"
        )
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
