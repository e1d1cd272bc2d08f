"""Packages by version in the agent's cache: ``cache.list`` and ``cache.patch`` (binary deltas),
in-process and over the wire to a real agent process (listening and polling)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.agent import contract
from octo_appliance.agent.cache import PackageCache
from octo_appliance.agent.handlers import AgentHandlers
from octo_appliance.agent.home import AgentConfig, Home
from octo_appliance.comms import CallFailed
from octo_appliance.feed.delta import make_delta

from .conftest import Agent
from .support import incoming

SIZE = 2 * 1024 * 1024


def versions() -> tuple[bytes, bytes]:
    """Two versions of a package: 2 MB of random bytes, then the same with 1% replaced."""
    rng = random.Random(7)
    old = rng.randbytes(SIZE)
    new = bytearray(old)
    new[SIZE // 2 : SIZE // 2 + SIZE // 100] = rng.randbytes(SIZE // 100)
    return old, bytes(new)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def cache(tmp_path: Path) -> PackageCache:
    (tmp_path / "cache").mkdir()
    (tmp_path / "scratch").mkdir()
    return PackageCache(tmp_path / "cache")


async def put(cache: PackageCache, tmp: Path, data: bytes, version: str) -> None:
    upload = write(tmp / f"upload-{version}", data)
    await cache.store(
        upload, sha(data), len(data), f"MyApp.{version}.zip", package_id="MyApp", version=version
    )


# -- PackageCache, in-process ------------------------------------------------------------


async def test_a_patch_is_stored_under_the_new_hash(cache: PackageCache, tmp_path: Path) -> None:
    old, new = versions()
    await put(cache, tmp_path, old, "1.0.0")
    delta = write(tmp_path / "delta", make_delta(old, new))

    stored = await cache.patch(
        delta,
        sha(old),
        sha(new),
        len(new),
        "MyApp.1.0.1.zip",
        scratch=tmp_path / "scratch",
        package_id="MyApp",
        version="1.0.1",
    )

    assert stored == cache.directory / sha(new)
    assert stored.read_bytes() == new
    assert {p["version"] for p in cache.versions_of("MyApp")} == {"1.0.0", "1.0.1"}
    assert list((tmp_path / "scratch").iterdir()) == []


async def test_a_patch_without_its_base_is_base_missing(
    cache: PackageCache, tmp_path: Path
) -> None:
    old, new = versions()
    delta = write(tmp_path / "delta", make_delta(old, new))

    with pytest.raises(CallFailed) as refused:
        await cache.patch(delta, sha(old), sha(new), len(new), "x", scratch=tmp_path / "scratch")

    assert refused.value.code == "base_missing"
    assert cache.lookup(sha(new)) is None


async def test_a_patch_on_damaged_base_content_stores_nothing(
    cache: PackageCache, tmp_path: Path
) -> None:
    """The cached base has the right name and length but other bytes (damaged on disk)."""
    old, new = versions()
    await put(cache, tmp_path, old, "1.0.0")
    damaged = bytearray(old)
    damaged[100] ^= 0xFF
    (cache.directory / sha(old)).write_bytes(bytes(damaged))
    delta = write(tmp_path / "delta", make_delta(old, new))

    with pytest.raises(CallFailed) as refused:
        await cache.patch(delta, sha(old), sha(new), len(new), "x", scratch=tmp_path / "scratch")

    assert refused.value.code == "delta_failed"
    assert cache.lookup(sha(new)) is None
    assert list((tmp_path / "scratch").iterdir()) == []


async def test_a_patch_that_makes_other_content_is_hash_mismatch(
    cache: PackageCache, tmp_path: Path
) -> None:
    old, new = versions()
    await put(cache, tmp_path, old, "1.0.0")
    other = new[:-1] + b"\x00" if new[-1:] != b"\x00" else new[:-1] + b"\x01"
    delta = write(tmp_path / "delta", make_delta(old, other))  # valid, but not for `new`

    with pytest.raises(CallFailed) as refused:
        await cache.patch(delta, sha(old), sha(new), len(new), "x", scratch=tmp_path / "scratch")

    assert refused.value.code == "hash_mismatch"
    assert cache.lookup(sha(new)) is None
    assert not (cache.directory / sha(other)).exists()
    assert list((tmp_path / "scratch").iterdir()) == []


async def test_list_leaves_out_files_retention_deleted(cache: PackageCache, tmp_path: Path) -> None:
    old, new = versions()
    await put(cache, tmp_path, old, "1.0.0")
    await put(cache, tmp_path, new, "1.0.1")
    await put(cache, tmp_path, b"another package", "1.0.1")  # same version, other hash
    index = json.loads(cache.index_file.read_text())
    index[sha(b"another package")]["package_id"] = "Other"
    cache.index_file.write_text(json.dumps(index))

    (cache.directory / sha(old)).unlink()  # the runner's retention, index untouched

    assert cache.versions_of("MyApp") == [
        {"sha256": sha(new), "version": "1.0.1", "length": len(new), "name": "MyApp.1.0.1.zip"}
    ]
    assert cache.versions_of("Nothing") == []


async def test_storing_a_known_hash_again_adds_its_package_id(
    cache: PackageCache, tmp_path: Path
) -> None:
    data = b"content stored before package ids existed"
    await cache.store(write(tmp_path / "a", data), sha(data), len(data), "legacy.zip")
    assert cache.versions_of("MyApp") == []

    await put(cache, tmp_path, data, "2.0.0")

    assert [p["version"] for p in cache.versions_of("MyApp")] == ["2.0.0"]
    assert json.loads(cache.index_file.read_text())[sha(data)]["name"] == "legacy.zip"


# -- the handlers, in-process -------------------------------------------------------------


def test_the_home_has_applications_and_a_journal_path(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.ensure()

    assert home.applications_dir == home.root / "applications"
    assert home.applications_dir.is_dir()
    assert home.applications_dir.stat().st_mode & 0o777 == 0o700
    assert home.journal_file == home.root / "journal.json"


async def test_the_runner_document_names_the_cache_applications_and_journal(
    tmp_path: Path,
) -> None:
    home = Home(tmp_path / "h")
    home.ensure()
    handlers = AgentHandlers(home, AgentConfig(name="web", mode="listening"), lambda r: None)
    documents: list[dict[str, Any]] = []

    async def run(pyz: Path, document: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        documents.append(document)
        return {"exit_code": 0, "success": True}

    async def emit(event: dict[str, Any]) -> None:
        pass

    handlers.host.run = run  # type: ignore[method-assign]
    context = {"step": "Deploy", "cache_dir": "/elsewhere"}

    request = {"protocol": 1, "command": "run-script", "arguments": {}, "variables": []}
    await handlers._run(Path("runner.pyz"), "T-1", request, context, emit, 1.0)

    sent = documents[0]["context"]
    assert sent["step"] == "Deploy" and sent["task_id"] == "T-1"
    assert sent["cache_dir"] == str(home.cache_dir)  # the agent's own, not the appliance's
    assert sent["applications_dir"] == str(home.applications_dir)
    assert sent["journal_file"] == str(home.journal_file)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        (contract.CACHE_LIST, {}),
        (contract.CACHE_LIST, {"package_id": 5}),
        (contract.CACHE_PATCH, {"base_sha256": "nope", "sha256": "ab" * 32, "length": 1}),
        (contract.CACHE_PATCH, {"base_sha256": "ab" * 32, "sha256": "ab" * 32, "length": -1}),
        (contract.CACHE_PATCH, {"base_sha256": "ab" * 32, "sha256": "ab" * 32, "length": 1}),
        (contract.CACHE_PUT, {"sha256": "ab" * 32, "length": 1, "version": 3}),
    ],
)
async def test_malformed_cache_calls_are_bad_requests(
    tmp_path: Path, method: str, params: dict[str, Any]
) -> None:
    home = Home(tmp_path / "h")
    home.ensure()
    handlers = AgentHandlers(home, AgentConfig(name="web", mode="listening"), lambda r: None)

    with pytest.raises(CallFailed) as refused:
        await handlers(incoming(method, params))
    assert refused.value.code == "bad_request"


# -- a real agent process, listening and polling -------------------------------------------


def test_put_list_and_patch_over_the_wire(agent: Agent, tmp_path: Path) -> None:
    old, new = versions()
    target = agent.target
    base = {"package_id": "Wire", "length": len(old), "name": "Wire.1.0.0.zip"}
    target.call(
        contract.CACHE_PUT,
        {**base, "sha256": sha(old), "version": "1.0.0"},
        upload=write(tmp_path / "old", old),
    )
    listed = target.call(contract.CACHE_LIST, {"package_id": "Wire"}).result
    assert listed == {
        "packages": [
            {"sha256": sha(old), "version": "1.0.0", "length": len(old), "name": "Wire.1.0.0.zip"}
        ]
    }

    delta = make_delta(old, new)
    patched = target.call(
        contract.CACHE_PATCH,
        {
            "base_sha256": sha(old),
            "sha256": sha(new),
            "length": len(new),
            "name": "Wire.1.0.1.zip",
            "package_id": "Wire",
            "version": "1.0.1",
        },
        upload=write(tmp_path / "delta", delta),
    ).result

    stored = Path(patched["path"])
    assert stored == agent.home.cache_dir / sha(new)
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha(new)
    assert len(delta) < len(new) // 20
    versions_now = target.call(contract.CACHE_LIST, {"package_id": "Wire"}).result["packages"]
    assert sorted(p["version"] for p in versions_now) == ["1.0.0", "1.0.1"]
    assert target.call(contract.CACHE_HAS, {"sha256": sha(new)}).result["present"] is True
    assert list(agent.home.tmp_dir.iterdir()) == []


def test_patch_errors_over_the_wire_store_nothing(agent: Agent, tmp_path: Path) -> None:
    old, new = versions()
    old, new = old[:-3] + b"err", new[:-3] + b"err"  # hashes of their own in this module
    target = agent.target
    delta = write(tmp_path / "delta", make_delta(old, new))
    params = {"base_sha256": sha(old), "sha256": sha(new), "length": len(new), "name": "E.zip"}

    with pytest.raises(CallFailed) as missing:
        target.call(contract.CACHE_PATCH, params, upload=delta)
    assert missing.value.code == "base_missing"

    target.call(
        contract.CACHE_PUT,
        {"sha256": sha(old), "length": len(old), "name": "E.1.zip"},
        upload=write(tmp_path / "old", old),
    )
    with pytest.raises(CallFailed) as mismatch:
        target.call(contract.CACHE_PATCH, {**params, "sha256": "ab" * 32}, upload=delta)
    assert mismatch.value.code == "hash_mismatch"

    assert target.call(contract.CACHE_HAS, {"sha256": "ab" * 32}).result["present"] is False
    assert target.call(contract.CACHE_HAS, {"sha256": sha(new)}).result["present"] is False
    assert not (agent.home.cache_dir / ("ab" * 32)).exists()
