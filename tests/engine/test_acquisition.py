"""Package acquisition against real agent processes (listening and polling, dialled through the
appliance's own transports and agent network) and the built-in worker.

The feed is an in-memory stand-in (the acquirer only needs :class:`PackageSource`); the wire,
the agents, their caches and the deltas are the real ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.engine.acquisition import Acquirer, Transfer, _bases, format_size
from octo_appliance.transports.base import TargetAddress, Transport
from octo_appliance.transports.local import WORKER
from tests.engine.acquisition_rig import (
    ALL,
    BIG,
    MEMBER,
    MemoryFeed,
    Record,
    Rig,
    acquire,
    assert_small_deltas,
    random_members,
)
from tests.packages_support import parts_zip


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("acquisition"))
    try:
        yield rig.start()
    finally:
        rig.close()


# -- the tests ---------------------------------------------------------------------------


def test_a_second_acquire_moves_no_bytes(rig: Rig) -> None:
    feed = MemoryFeed()
    package = parts_zip(random_members(20, seed=1))
    record = feed.add("Again", "1.0.0", package)

    first, first_lines = acquire(rig, feed, record, ALL)
    second, second_lines = acquire(rig, feed, record, ALL)

    assert {name: t.mode for name, t in first.items()} == dict.fromkeys(ALL, "full")
    assert all(t.bytes_sent == len(package) for t in first.values())
    assert {name: t.mode for name, t in second.items()} == dict.fromkeys(ALL, "cached")
    assert all(t.bytes_sent == 0 for t in second.values())
    for name in ALL:
        assert rig.cached(name, record.sha256) == package
    assert sorted(target for _, _, target in first_lines) == sorted(ALL)  # one line each
    assert (
        "info",
        f"Again 1.0.0: sent the full package, {format_size(len(package))}",
        "poll-1",
    ) in first_lines
    assert ("info", "Again 1.0.0: already in the target's cache, 0 bytes sent", "appliance") in (
        second_lines
    )
    assert list(rig.spool.iterdir()) == []  # nothing decrypted was spooled on the appliance


def test_a_one_percent_change_travels_as_a_small_delta(rig: Rig) -> None:
    feed = MemoryFeed()
    members = random_members(BIG, seed=2)
    old = parts_zip(members)
    members[13] = random.Random(99).randbytes(MEMBER)
    members[150] = random.Random(98).randbytes(MEMBER)  # 2 of 200 members: 1% of the content
    new = parts_zip(members)
    first = feed.add("Big", "1.4.0", old)
    second = feed.add("Big", "1.4.1", new)
    acquire(rig, feed, first, ALL)
    assert feed.reads == {"1.4.0": 1}  # decrypted once, sent to every target from memory
    feed.reads.clear()

    transfers, lines = acquire(rig, feed, second, ALL)

    assert_small_deltas(rig, transfers, second, new, base_version="1.4.0")
    assert feed.reads == {"1.4.0": 1, "1.4.1": 1}  # one delta, shared by every target
    assert feed.opens["1.4.1"] == 0  # the whole package was never read for sending
    message = next(m for _, m, target in lines if target == "listen-1")
    assert message.startswith("Big 1.4.1: sent a delta from 1.4.0, ")
    assert f"% of {format_size(len(new))})" in message


def test_a_rollback_travels_as_a_delta_from_the_newer_version(rig: Rig) -> None:
    """The targets hold only 3.0.1; going back to 3.0.0 needs no whole package."""
    feed = MemoryFeed()
    members = random_members(BIG, seed=5)
    old = parts_zip(members)
    members[40] = random.Random(97).randbytes(MEMBER)
    new = parts_zip(members)
    first = feed.add("Back", "3.0.0", old)
    second = feed.add("Back", "3.0.1", new)
    acquire(rig, feed, second, ALL)

    transfers, _ = acquire(rig, feed, first, ALL)

    assert_small_deltas(rig, transfers, first, old, base_version="3.0.1")


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        pytest.param("1.2.0", ["1.1.0", "1.0.0", "1.3.0", "2.0.0"], id="older newest first"),
        pytest.param("1.0.0", ["1.1.0", "1.2.0", "1.3.0", "2.0.0"], id="oldest: only newer"),
        pytest.param("2.0.0", ["1.3.0", "1.2.0", "1.1.0", "1.0.0"], id="newest: only older"),
        pytest.param("9.9.9", [], id="not in the feed: nothing known"),
    ],
)
def test_delta_bases_in_order_of_preference(wanted: str, expected: list[str]) -> None:
    feed = MemoryFeed()
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "2.0.0"):
        feed.add("Order", version, version.encode())
    record = Record("Order", wanted, hashlib.sha256(wanted.encode()).hexdigest(), 5, "x.zip")

    assert [b.version for b in _bases(feed.versions("Order"), record)] == expected


def test_a_version_with_the_same_content_is_no_base() -> None:
    feed = MemoryFeed()
    first = feed.add("Twin", "1.0.0", b"same")
    second = feed.add("Twin", "1.0.1", b"same")
    assert _bases(feed.versions("Twin"), second) == [] == _bases(feed.versions("Twin"), first)


def test_a_delta_the_target_cannot_use_falls_back_to_the_whole_package(rig: Rig) -> None:
    """poll-1's cached base is damaged on disk (same name and length, other bytes): the delta
    does not apply there, so it gets the full package; the others take the delta."""
    feed = MemoryFeed()
    members = random_members(40, seed=3)
    old = parts_zip(members)
    members[5] = random.Random(97).randbytes(MEMBER)
    new = parts_zip(members)
    first = feed.add("Fallback", "2.0.0", old)
    second = feed.add("Fallback", "2.0.1", new)
    acquire(rig, feed, first, ("listen-1", "poll-1"))
    damaged = bytearray(old)
    damaged[len(old) // 3] ^= 0xFF
    (rig.homes["poll-1"].cache_dir / first.sha256).write_bytes(bytes(damaged))

    transfers, lines = acquire(rig, feed, second, ("listen-1", "poll-1"))

    assert transfers["listen-1"].mode == "delta"
    fallback = transfers["poll-1"]
    assert fallback.mode == "full"
    assert "the delta from 2.0.0 was refused" in fallback.message
    assert fallback.bytes_sent > len(new)  # the refused delta counts too
    assert rig.cached("poll-1", second.sha256) == new
    assert rig.cached("listen-1", second.sha256) == new
    assert any(level == "warning" and target == "poll-1" for level, _, target in lines)


def test_a_base_gone_from_the_cache_falls_back_too(rig: Rig) -> None:
    """The base was listed, then deleted (retention) before the delta arrived."""
    feed = MemoryFeed()
    members = random_members(30, seed=4)
    first = feed.add("Gone", "1.0.0", parts_zip(members))
    members[0] = b"changed" * 1000
    new = parts_zip(members)
    second = feed.add("Gone", "1.1.0", new)
    acquire(rig, feed, first, ("appliance",))

    class DeletesTheBase:
        """The worker's transport, with retention striking between list and patch."""

        def __getattr__(self, name: str) -> Any:
            return getattr(rig.local, name)

        async def upload_delta(self, target: TargetAddress, base_sha256: str, *a: Any) -> None:
            (rig.root / "worker" / "cache" / base_sha256).unlink()
            await rig.local.upload_delta(target, base_sha256, *a)

    transfers, _ = acquire(rig, feed, second, ("appliance",), transports=lambda t: DeletesTheBase())

    assert transfers["appliance"].mode == "full"
    assert "is not in this target's cache" in transfers["appliance"].message
    assert rig.cached("appliance", second.sha256) == new


def test_no_delta_when_it_would_not_pay_or_the_package_is_too_large(rig: Rig) -> None:
    feed = MemoryFeed()
    first = feed.add("Unrelated", "1.0.0", parts_zip(random_members(10, seed=5)))
    second = feed.add("Unrelated", "2.0.0", parts_zip(random_members(10, seed=6)))
    acquire(rig, feed, first, ("appliance", "listen-2"))

    transfers, _ = acquire(rig, feed, second, ("appliance",))
    assert transfers["appliance"].mode == "full"
    assert "no delta from 1.0.0 (it would be" in transfers["appliance"].message

    close_to_first = [*random_members(9, seed=5), b"one member changed" * 100]
    third = feed.add("Unrelated", "2.0.1", parts_zip(close_to_first))
    transfers, _ = acquire(rig, feed, third, ("listen-2",), delta_max_bytes=1024)
    assert transfers["listen-2"].mode == "full"
    assert "larger than the delta limit of 1.0 KB" in transfers["listen-2"].message
    assert feed.reads["2.0.1"] == 0


def test_one_unreachable_target_fails_alone(rig: Rig) -> None:
    feed = MemoryFeed()
    package = b"small package " * 1000
    record = feed.add("Partial", "1.0.0", package)
    identity = rig.homes["listen-1"].load_identity()
    rig.targets["dead"] = TargetAddress(
        id="tgt_dead",
        name="dead",
        communication_style="listening",
        uri="https://127.0.0.1:1",
        thumbprint="ab" * 32,
        certificate=identity.cert_pem.decode(),
    )
    rig.targets["alien"] = TargetAddress(id="tgt_alien", name="alien", communication_style="ssh")

    transfers, lines = acquire(rig, feed, record, ("dead", "alien", "listen-2"))

    assert transfers["dead"].mode == "failed"
    assert transfers["alien"].mode == "failed"
    assert "no transport 'ssh'" in transfers["alien"].message
    assert transfers["listen-2"].mode == "full"
    assert rig.cached("listen-2", record.sha256) == package
    assert {target for level, _, target in lines if level == "error"} == {"dead", "alien"}


class Gauge:
    """Wraps a transport; counts calls in flight across all wrapped transports. The first
    calls wait until ``limit`` are in flight at once, so reaching the bound is certain."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.peak = 0
        self.full = asyncio.Event()

    def wrap(self, transport: Transport) -> Any:
        gauge = self

        class Wrapped:
            accepts_streams = transport.accepts_streams

            def __getattr__(self, name: str) -> Any:
                method = getattr(transport, name)

                async def counted(*args: Any, **kwargs: Any) -> Any:
                    gauge.in_flight += 1
                    gauge.peak = max(gauge.peak, gauge.in_flight)
                    try:
                        if gauge.in_flight >= gauge.limit:
                            gauge.full.set()
                        async with asyncio.timeout(60):
                            await gauge.full.wait()
                        return await method(*args, **kwargs)
                    finally:
                        gauge.in_flight -= 1

                return counted

        return Wrapped()


def test_parallelism_bounds_the_targets_served_at_once(rig: Rig) -> None:
    feed = MemoryFeed()
    package = parts_zip(random_members(30, seed=7))
    record = feed.add("Bounded", "1.0.0", package)
    names = ("listen-1", "listen-2", "poll-1", "poll-2", "appliance")
    gauge = Gauge(limit=2)

    def transports(target: TargetAddress) -> Any:
        transport = rig.transport_for(target)
        return gauge.wrap(transport) if transport is not None else None

    transfers, _ = acquire(rig, feed, record, names, parallelism=2, transports=transports)

    assert gauge.peak == 2
    assert {name: t.mode for name, t in transfers.items()} == dict.fromkeys(names, "full")
    for name in names:
        assert rig.cached(name, record.sha256) == package


def test_a_transport_that_needs_files_gets_a_private_spool_file_removed_after(
    rig: Rig, tmp_path: Path
) -> None:
    feed = MemoryFeed()
    package = b"spooled package " * 5000
    record = feed.add("Spooled", "1.0.0", package)
    seen: list[tuple[Path, int, bytes]] = []

    class FilesOnly:
        accepts_streams = False

        def __getattr__(self, name: str) -> Any:
            return getattr(rig.local, name)

        async def upload(self, target: TargetAddress, content: Any, *a: Any, **kw: Any) -> None:
            assert isinstance(content, Path)
            seen.append((content, content.stat().st_mode & 0o777, content.read_bytes()))
            await rig.local.upload(target, content, *a, **kw)

    transfers, _ = acquire(rig, feed, record, ("appliance",), transports=lambda t: FilesOnly())

    assert transfers["appliance"].mode == "full"
    path, mode, content = seen[0]
    assert path.parent == rig.spool and mode == 0o600 and content == package
    assert not path.exists()
    assert rig.cached("appliance", record.sha256) == package


def test_each_target_is_reported_as_soon_as_its_own_transfer_ends(rig: Rig) -> None:
    """``on_placed`` hears of a target while another's upload is still held: the engine
    lets that target install meanwhile (deploy-package pipelines transfer and install)."""
    feed = MemoryFeed()
    package = parts_zip(random_members(5, seed=11))
    record = feed.add("Piped", "1.0.0", package)
    held = rig.targets["poll-1"]

    async def scenario() -> tuple[list[str], dict[str, Transfer]]:
        release = asyncio.Event()
        heard: list[str] = []

        class Held:
            def __init__(self, transport: Transport) -> None:
                self.transport = transport
                self.accepts_streams = transport.accepts_streams

            def __getattr__(self, name: str) -> Any:
                return getattr(self.transport, name)

            async def upload(self, target: TargetAddress, *a: Any, **kw: Any) -> Any:
                if target.id == held.id:
                    async with asyncio.timeout(60):
                        await release.wait()
                return await self.transport.upload(target, *a, **kw)

        def transports(target: TargetAddress) -> Any:
            transport = rig.transport_for(target)
            return Held(transport) if transport is not None else None

        def placed(transfer: Transfer) -> None:
            heard.append(transfer.target_name)
            if transfer.target_name == "listen-1":  # the other is still held here
                release.set()

        acquirer = Acquirer(
            transports, feed, parallelism=10, delta_max_bytes=0, spool_dir=rig.spool
        )
        targets = [rig.targets["listen-1"], held]
        transfers = await acquirer.acquire(record, targets, lambda *_: None, placed)
        return heard, transfers

    heard, transfers = rig.run(scenario())

    assert heard == ["listen-1", "poll-1"]
    assert {t.target_name: t.mode for t in transfers.values()} == {
        "listen-1": "full",
        "poll-1": "full",
    }
    assert rig.cached("poll-1", record.sha256) == package


def test_the_worker_cache_lists_versions_like_an_agent(rig: Rig) -> None:
    feed = MemoryFeed()
    record = feed.add("Listed", "3.1.4", b"listed package content" * 100)
    acquire(rig, feed, record, ("appliance", "poll-2"))

    local = rig.run(rig.local.cached_versions(WORKER, "Listed"))
    agent = rig.run(rig.transports["polling"].cached_versions(rig.targets["poll-2"], "Listed"))

    expected = [
        {
            "sha256": record.sha256,
            "version": "3.1.4",
            "length": record.size,
            "name": "Listed.3.1.4.zip",
        }
    ]
    assert local == expected
    assert agent == expected


def test_format_size() -> None:
    assert format_size(0) == "0 bytes"
    assert format_size(1023) == "1023 bytes"
    assert format_size(524_595) == "512.3 KB"
    assert format_size(45 * 1024 * 1024) == "45.0 MB"
