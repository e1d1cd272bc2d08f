"""The package cache: verified, atomic, idempotent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.agent.cache import PackageCache, check_sha256
from octo_appliance.comms import CallFailed


def upload(tmp_path: Path, data: bytes, name: str = "upload.part") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path: Path) -> PackageCache:
    directory = tmp_path / "cache"
    directory.mkdir()
    return PackageCache(directory)


async def test_store_and_lookup(cache: PackageCache, tmp_path: Path) -> None:
    path, sha = upload(tmp_path, b"package content")
    assert cache.lookup(sha) is None

    stored = await cache.store(path, sha, 15, "app.1.0.zip")

    assert stored == cache.directory / sha
    assert stored.read_bytes() == b"package content"
    assert not path.exists()  # moved, not copied
    assert cache.lookup(sha) == 15
    index = json.loads(cache.index_file.read_text())
    assert index[sha]["name"] == "app.1.0.zip" and index[sha]["length"] == 15


async def test_storing_twice_is_a_no_op(cache: PackageCache, tmp_path: Path) -> None:
    first, sha = upload(tmp_path, b"abc", "one")
    second, _ = upload(tmp_path, b"abc", "two")
    await cache.store(first, sha, 3, "a.zip")

    assert await cache.store(second, sha, 3, "renamed.zip") == cache.directory / sha
    assert json.loads(cache.index_file.read_text())[sha]["name"] == "a.zip"


async def refusal(cache: PackageCache, *args: Any, **kw: Any) -> str:
    """The code of the :class:`CallFailed` the cache's ``store`` raises."""
    with pytest.raises(CallFailed) as refused:
        await cache.store(*args, **kw)
    return refused.value.code


async def test_content_that_is_not_the_named_hash_is_refused(
    cache: PackageCache, tmp_path: Path
) -> None:
    path, _ = upload(tmp_path, b"evil")
    claimed = hashlib.sha256(b"good").hexdigest()

    assert await refusal(cache, path, claimed, 4, "x") == "hash_mismatch"
    assert cache.lookup(claimed) is None
    assert list(cache.directory.iterdir()) == []


async def test_wrong_length_is_refused(cache: PackageCache, tmp_path: Path) -> None:
    path, sha = upload(tmp_path, b"1234")
    assert await refusal(cache, path, sha, 5, "x") == "length_mismatch"


def test_a_truncated_cached_file_is_not_present(cache: PackageCache, tmp_path: Path) -> None:
    sha = hashlib.sha256(b"whole").hexdigest()
    (cache.directory / sha).write_bytes(b"who")
    cache.index_file.write_text(json.dumps({sha: {"name": "x", "length": 5}}))

    assert cache.lookup(sha) is None


@pytest.mark.parametrize("value", ["../../etc/passwd", "ab" * 31, "g" * 64, None, 12])
def test_hashes_are_checked_before_they_become_paths(value: object) -> None:
    with pytest.raises(CallFailed) as refused:
        check_sha256(value)
    assert refused.value.code == "bad_request"


def test_upper_case_hashes_are_accepted() -> None:
    assert check_sha256("AB" * 32) == "ab" * 32


async def test_a_hash_the_transfer_computed_is_trusted_only_when_it_matches(
    cache: PackageCache, tmp_path: Path
) -> None:
    path, sha = upload(tmp_path, b"verified on arrival")
    other = hashlib.sha256(b"something else").hexdigest()
    code = await refusal(cache, path, sha, 19, "a.zip", verified_sha256=other)
    assert code == "hash_mismatch"
    assert cache.lookup(sha) is None and path.exists()

    stored = await cache.store(path, sha, 19, "a.zip", verified_sha256=sha)
    assert stored.read_bytes() == b"verified on arrival"
