"""The sealed file format: round trips, flat memory, and every way a file can be tampered with."""

from __future__ import annotations

import os
import stat
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octo_appliance.exceptions import VaultError
from octo_appliance.vault import KeyRing, MasterKey, Vault
from octo_appliance.vault.files import (
    DEFAULT_CHUNK_SIZE,
    HEADER_BYTES,
    TAG_BYTES,
    SealedWriter,
    key_id_of_file,
    open_sealed,
    read_sealed_file,
    rewrap_file,
    seal_file,
    unseal_file,
)

AAD = b"packages/app/1.0.0"
CHUNK = 64  # small chunks so tests have many of them
BLOCK = CHUNK + TAG_BYTES


@pytest.fixture
def vault() -> Vault:
    return Vault(KeyRing(MasterKey.generate()))


def _seal(vault: Vault, path: Path, data: bytes, aad: bytes = AAD, chunk: int = CHUNK) -> Path:
    with SealedWriter(vault, path, aad, chunk_size=chunk) as writer:
        writer.write(data)
    return path


def _chunks(path: Path) -> tuple[bytes, list[bytes]]:
    raw = path.read_bytes()
    body = raw[HEADER_BYTES:]
    return raw[:HEADER_BYTES], [body[i : i + BLOCK] for i in range(0, len(body), BLOCK)]


def _assert_does_not_open(vault: Vault, path: Path, aad: bytes = AAD) -> VaultError:
    with pytest.raises(VaultError) as caught:
        read_sealed_file(vault, path, aad)
    assert caught.value.hint
    return caught.value


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=700),
    chunk=st.integers(min_value=1, max_value=100),
    cuts=st.lists(st.integers(min_value=0, max_value=700), max_size=6),
)
def test_round_trip_whatever_the_write_pattern(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, chunk: int, cuts: list[int]
) -> None:
    vault = Vault(KeyRing(MasterKey(b"k" * 32)))
    path = tmp_path_factory.mktemp("rt") / "file"
    with SealedWriter(vault, path, AAD, chunk_size=chunk) as writer:
        start = 0
        for cut in sorted(c for c in cuts if c <= len(data)):
            writer.write(data[start:cut])
            start = cut
        writer.write(data[start:])
    chunks = list(open_sealed(vault, path, AAD))
    assert b"".join(chunks) == data
    assert all(len(c) == chunk for c in chunks[:-1]) and len(chunks[-1]) <= chunk


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK])
def test_chunk_boundaries(vault: Vault, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = _seal(vault, tmp_path / "f", data)
    assert read_sealed_file(vault, path, AAD) == data
    expected_chunks = max(1, -(-size // CHUNK))
    assert path.stat().st_size == HEADER_BYTES + size + expected_chunks * TAG_BYTES


def test_file_is_private_hides_content_and_names_its_key(vault: Vault, tmp_path: Path) -> None:
    data = b"TOP-SECRET-PACKAGE-CONTENT " * 100
    path = _seal(vault, tmp_path / "sub" / "f", data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"TOP-SECRET" not in path.read_bytes()
    assert key_id_of_file(path) == vault.current_key_id
    assert os.listdir(path.parent) == ["f"]  # the temporary file was renamed


def test_large_file_streams_with_flat_memory(vault: Vault, tmp_path: Path) -> None:
    source = tmp_path / "plain.bin"
    piece = os.urandom(1024 * 1024)
    with open(source, "wb") as handle:
        for _ in range(12):
            handle.write(piece)
    tracemalloc.start()
    try:
        size = seal_file(vault, source, tmp_path / "sealed", AAD)
        _, peak_write = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        count = 0
        for chunk in open_sealed(vault, tmp_path / "sealed", AAD):
            assert len(chunk) <= DEFAULT_CHUNK_SIZE
            count += len(chunk)
        _, peak_read = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == count == 12 * 1024 * 1024
    assert peak_write < 1024 * 1024 and peak_read < 1024 * 1024  # a few chunks, not the file
    out = tmp_path / "out.bin"
    assert unseal_file(vault, tmp_path / "sealed", out, AAD) == size
    assert out.read_bytes()[: len(piece)] == piece


@pytest.mark.parametrize(
    "offset",
    [
        0,  # magic
        8,  # version
        12,  # chunk size
        20,  # file id
        29 + 3,  # key id (still hex)
        45,  # wrap nonce
        60,  # wrapped data key
        HEADER_BYTES,  # first chunk's ciphertext
        HEADER_BYTES + BLOCK - 1,  # first chunk's tag
        HEADER_BYTES + 2 * BLOCK + 3,  # last chunk
    ],
)
def test_any_altered_byte_is_detected(vault: Vault, tmp_path: Path, offset: int) -> None:
    path = _seal(vault, tmp_path / "f", os.urandom(2 * CHUNK + 10))
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x04 if offset == 29 + 3 else 0x01
    path.write_bytes(bytes(raw))
    _assert_does_not_open(vault, path)


def test_truncation_is_detected_even_at_a_chunk_boundary(vault: Vault, tmp_path: Path) -> None:
    path = _seal(vault, tmp_path / "f", os.urandom(3 * CHUNK))
    header, chunks = _chunks(path)
    for cut in (
        header + b"".join(chunks[:2]),  # drop the last chunk
        header + b"".join(chunks)[:-1],  # drop one byte
        header + chunks[0][:10],  # mid-chunk
        header,  # no chunk at all
        header[:50],  # mid-header
        b"",
    ):
        path.write_bytes(cut)
        error = _assert_does_not_open(vault, path)
        assert "f" in error.message


def test_appended_data_is_detected(vault: Vault, tmp_path: Path) -> None:
    path = _seal(vault, tmp_path / "f", os.urandom(2 * CHUNK))
    header, chunks = _chunks(path)
    for extra in (chunks[-1], b"x", os.urandom(BLOCK)):
        path.write_bytes(header + b"".join(chunks) + extra)
        _assert_does_not_open(vault, path)


def test_reordered_chunks_are_detected(vault: Vault, tmp_path: Path) -> None:
    path = _seal(vault, tmp_path / "f", os.urandom(3 * CHUNK))
    header, chunks = _chunks(path)
    path.write_bytes(header + chunks[1] + chunks[0] + chunks[2])
    _assert_does_not_open(vault, path)


def test_chunks_and_headers_swapped_between_files_are_detected(
    vault: Vault, tmp_path: Path
) -> None:
    first = _seal(vault, tmp_path / "a", os.urandom(3 * CHUNK))
    second = _seal(vault, tmp_path / "b", os.urandom(3 * CHUNK))
    head_a, chunks_a = _chunks(first)
    head_b, chunks_b = _chunks(second)
    mixed = tmp_path / "mixed"
    mixed.write_bytes(head_a + chunks_a[0] + chunks_b[1] + chunks_a[2])
    _assert_does_not_open(vault, mixed)
    mixed.write_bytes(head_b + b"".join(chunks_a))
    _assert_does_not_open(vault, mixed)


def test_file_opened_under_another_name_does_not_open(vault: Vault, tmp_path: Path) -> None:
    path = _seal(vault, tmp_path / "f", b"content")
    error = _assert_does_not_open(vault, path, aad=b"packages/other/1.0.0")
    assert "another name" in error.message


def test_file_under_an_unknown_key_names_the_key(vault: Vault, tmp_path: Path) -> None:
    other = Vault(KeyRing(MasterKey.generate()))
    path = _seal(other, tmp_path / "f", b"content")
    error = _assert_does_not_open(vault, path)
    assert other.current_key_id in error.message


def test_not_a_sealed_file(vault: Vault, tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_bytes(b"hello " * 100)
    error = _assert_does_not_open(vault, path)
    assert "not a sealed file" in error.message
    with pytest.raises(VaultError):
        key_id_of_file(path)


def test_failed_write_leaves_the_old_file_and_no_temporary(vault: Vault, tmp_path: Path) -> None:
    path = _seal(vault, tmp_path / "f", b"old content")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), SealedWriter(vault, path, AAD, chunk_size=CHUNK) as writer:
        writer.write(os.urandom(5 * CHUNK))
        raise Boom
    assert read_sealed_file(vault, path, AAD) == b"old content"
    assert os.listdir(tmp_path) == ["f"]


def test_unseal_of_a_damaged_file_writes_nothing(vault: Vault, tmp_path: Path) -> None:
    path = _seal(vault, tmp_path / "f", os.urandom(3 * CHUNK))
    header, chunks = _chunks(path)
    path.write_bytes(header + b"".join(chunks[:2]))
    with pytest.raises(VaultError):
        unseal_file(vault, path, tmp_path / "out" / "plain", AAD)
    assert os.listdir(tmp_path / "out") == []


def test_rewrap_moves_the_key_and_copies_the_ciphertext(tmp_path: Path) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    data = os.urandom(5 * CHUNK + 7)
    path = _seal(Vault(KeyRing(old)), tmp_path / "f", data)
    _, body_before = _chunks(path)
    rotating = Vault(KeyRing(new, (old,)))
    assert rewrap_file(rotating, path) is True
    assert key_id_of_file(path) == new.key_id
    assert _chunks(path)[1] == body_before
    assert read_sealed_file(Vault(KeyRing(new)), path, AAD) == data
    assert rewrap_file(rotating, path) is False
    assert os.listdir(tmp_path) == ["f"]
    with pytest.raises(VaultError, match="no master key"):
        read_sealed_file(Vault(KeyRing(old)), path, AAD)


def test_bad_chunk_size_is_refused(vault: Vault, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SealedWriter(vault, tmp_path / "f", AAD, chunk_size=0)
