"""Binary deltas: they round-trip, they are small for small changes, and they refuse to apply
to anything but their own base."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from octo_appliance.feed.delta import DeltaError, apply_delta, make_delta
from tests.packages_support import parts_zip

MEMBER = 100_000


def members(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(MEMBER) for _ in range(count)]


def apply(tmp_path: Path, old: bytes, delta: bytes, **kwargs: int) -> bytes:
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "delta").write_bytes(delta)
    out = tmp_path / "out"
    length = apply_delta(tmp_path / "old", tmp_path / "delta", out, **kwargs)
    data = out.read_bytes()
    assert length == len(data)
    return data


def test_a_small_change_in_a_large_zip_makes_a_small_delta(tmp_path: Path) -> None:
    parts = members(100)  # ~10 MB of random data
    old = parts_zip(parts)
    parts[7] = random.Random(99).randbytes(MEMBER)  # 1% of the members replaced
    new = parts_zip(parts)

    delta = make_delta(old, new)

    assert len(delta) < len(new) * 0.02
    assert apply(tmp_path, old, delta) == new


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"", b""),
        (b"", b"brand new"),
        (b"short", b"shorter or longer"),  # below zstd's minimum prefix: no prefix used
        (b"x" * 1000, b""),
        (b"same content" * 100, b"same content" * 100),
    ],
)
def test_edge_cases_round_trip(tmp_path: Path, old: bytes, new: bytes) -> None:
    assert apply(tmp_path, old, make_delta(old, new)) == new


def test_a_delta_written_across_many_chunks_round_trips(tmp_path: Path) -> None:
    """Output larger than one write chunk, from a base that is unrelated to it."""
    old = random.Random(5).randbytes(3 * 1024 * 1024)
    new = random.Random(6).randbytes(3 * 1024 * 1024 + 17)

    assert apply(tmp_path, old, make_delta(old, new)) == new


def test_another_base_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    old = parts_zip(members(20))
    new = parts_zip([*members(19), b"changed" * 1000])
    delta = make_delta(old, new)
    other = bytearray(old)
    other[len(old) // 2] ^= 0xFF  # one flipped byte in the base

    with pytest.raises(DeltaError, match="does not apply"):
        apply(tmp_path, bytes(other), delta)
    assert not (tmp_path / "out").exists()


def test_a_truncated_delta_is_refused(tmp_path: Path) -> None:
    old = parts_zip(members(20))
    new = parts_zip(members(20, seed=2))
    delta = make_delta(old, new)

    with pytest.raises(DeltaError):
        apply(tmp_path, old, delta[: len(delta) // 2])
    assert not (tmp_path / "out").exists()


def test_garbage_and_trailing_data_are_refused(tmp_path: Path) -> None:
    old = b"base content " * 100
    delta = make_delta(old, b"new content " * 100)

    with pytest.raises(DeltaError):
        apply(tmp_path, old, b"not a zstd frame at all")
    with pytest.raises(DeltaError, match="after its frame"):
        apply(tmp_path, old, delta + b"extra")


def test_output_beyond_the_expected_length_stops(tmp_path: Path) -> None:
    old = b"a" * 100
    new = random.Random(3).randbytes(2 * 1024 * 1024)
    delta = make_delta(old, new)

    with pytest.raises(DeltaError, match="more than the expected"):
        apply(tmp_path, old, delta, max_length=len(new) - 1)
    assert not (tmp_path / "out").exists()
    assert apply(tmp_path, old, delta, max_length=len(new)) == new
