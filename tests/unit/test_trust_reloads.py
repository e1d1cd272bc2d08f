"""Targets that change while the appliance reloads its trusted agents share one more reload
after it: registering thousands of agents does not read every target once per registration
(docs/performance.md, "5,000 polling agents")."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from octo_appliance.builds.runner import RunnerBuild
from octo_appliance.comms import generate_identity
from octo_appliance.transports.base import TargetAddress
from octo_appliance.transports.network import AgentNetwork


async def eventually(predicate: Callable[[], object], what: str) -> None:
    async with asyncio.timeout(10):
        while not predicate():
            await asyncio.sleep(0.01)


def target(n: int) -> TargetAddress:
    identity = generate_identity(f"agent-{n}")
    return TargetAddress(
        f"tgt_{n}",
        f"agent-{n}",
        "polling",
        thumbprint=identity.thumbprint,
        certificate=identity.cert_pem.decode(),
    )


def network_of(tmp_path: Path, load: Callable[[], list[TargetAddress]]) -> AgentNetwork:
    runner = RunnerBuild("0.0.0", "0" * 64, tmp_path / "runner.pyz", 0)
    return AgentNetwork(generate_identity("appliance"), runner, load)


async def test_changes_during_a_reload_share_one_more_reload(tmp_path: Path) -> None:
    registered: list[TargetAddress] = []
    loads = 0
    release = threading.Event()

    def load() -> list[TargetAddress]:
        nonlocal loads
        loads += 1
        release.wait(10)  # the first read is slow: the registrations below arrive meanwhile
        return list(registered)

    network = network_of(tmp_path, load)
    loop = asyncio.get_running_loop()
    network.reload_trust_soon(loop)
    await eventually(lambda: loads == 1, "the first reload to start")

    for n in range(3):
        registered.append(target(n))
        for _ in range(20):  # each registration says the targets changed
            network.reload_trust_soon(loop)
    release.set()
    await eventually(lambda: network.target_by_id("tgt_2") is not None, "the last target")
    await asyncio.sleep(0.2)  # a third reload, if one were scheduled, would have run
    assert loads == 2
    assert all(network.polling_verdict(t.thumbprint).allowed for t in registered)


async def test_a_change_after_the_reloads_ended_reloads_again(tmp_path: Path) -> None:
    registered: list[TargetAddress] = []
    loads = 0

    def load() -> list[TargetAddress]:
        nonlocal loads
        loads += 1
        return list(registered)

    network = network_of(tmp_path, load)
    loop = asyncio.get_running_loop()
    network.reload_trust_soon(loop)
    await eventually(lambda: loads == 1, "the first reload")
    registered.append(target(1))
    network.reload_trust_soon(loop)
    await eventually(lambda: network.target_by_id("tgt_1") is not None, "the new target")
    assert loads == 2
