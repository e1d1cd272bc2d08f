"""Random-access reading of sealed files: the same bytes as the plaintext at any offset, flat
memory, and every tampering refused as it is read."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octo_appliance.exceptions import VaultError
from octo_appliance.vault import KeyRing, MasterKey, Vault
from octo_appliance.vault.files import HEADER_BYTES, TAG_BYTES, SealedWriter
from octo_appliance.vault.seekable import SealedReader, open_reader

AAD = b"packages/App/1.0.0/token"
CHUNK = 64
BLOCK = CHUNK + TAG_BYTES
VAULT = Vault(KeyRing(MasterKey.generate()))


def seal(path: Path, data: bytes, chunk: int = CHUNK) -> Path:
    with SealedWriter(VAULT, path, AAD, chunk_size=chunk) as writer:
        writer.write(data)
    return path


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 7])
def test_size_and_whole_read(tmp_path, size):
    data = os.urandom(size)
    with SealedReader(VAULT, seal(tmp_path / "f", data), AAD) as reader:
        assert reader.size == size
        assert reader.read() == data
        assert reader.read() == b""


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=700),
    reads=st.lists(st.tuples(st.integers(0, 800), st.integers(0, 300)), max_size=12),
)
def test_any_seek_and_read_matches_the_plaintext(tmp_path_factory, data, reads):
    path = seal(tmp_path_factory.mktemp("s") / "f", data)
    with open_reader(VAULT, path, AAD, expect_size=len(data)) as reader:
        for offset, length in reads:
            assert reader.seek(offset) == offset
            assert reader.read(length) == data[offset : offset + length]
        if len(data) >= 3:
            assert reader.seek(-3, io.SEEK_END) == len(data) - 3
            assert reader.read() == data[-3:]


def test_negative_seek_is_refused(tmp_path):
    with SealedReader(VAULT, seal(tmp_path / "f", b"abc"), AAD) as reader, pytest.raises(OSError):
        reader.seek(-1)


def test_an_altered_chunk_fails_when_read_not_before(tmp_path):
    data = os.urandom(4 * CHUNK)
    path = seal(tmp_path / "f", data)
    raw = bytearray(path.read_bytes())
    raw[HEADER_BYTES + 2 * BLOCK + 5] ^= 1  # inside chunk 2
    path.write_bytes(bytes(raw))
    with open_reader(VAULT, path, AAD) as reader:
        assert reader.read(2 * CHUNK) == data[: 2 * CHUNK]
        with pytest.raises(VaultError, match="chunk 2"):
            reader.read(CHUNK)


def test_a_file_cut_at_a_chunk_boundary_is_refused(tmp_path):
    path = seal(tmp_path / "f", os.urandom(4 * CHUNK + 10))
    raw = path.read_bytes()
    path.write_bytes(raw[: HEADER_BYTES + 4 * BLOCK])  # the last chunk is gone
    with pytest.raises(VaultError, match="holds 256 bytes"):
        open_reader(VAULT, path, AAD, expect_size=4 * CHUNK + 10)
    with SealedReader(VAULT, path, AAD) as reader:  # without the expected size: at the end
        reader.seek(3 * CHUNK)
        with pytest.raises(VaultError, match="chunk 3"):
            reader.read()


def test_another_name_or_key_does_not_open(tmp_path):
    path = seal(tmp_path / "f", b"x" * 100)
    with (
        SealedReader(VAULT, path, b"packages/Other/1.0.0/token") as reader,
        pytest.raises(VaultError),
    ):
        reader.read()
    with pytest.raises(VaultError):
        SealedReader(Vault(KeyRing(MasterKey.generate())), path, AAD)


def test_memory_stays_flat_reading_a_large_file(tmp_path):
    data_size = 24 * 1024 * 1024
    path = tmp_path / "big"
    piece = os.urandom(1024 * 1024)
    with SealedWriter(VAULT, path, AAD) as writer:
        for _ in range(data_size // len(piece)):
            writer.write(piece)
    tracemalloc.start()
    try:
        with open_reader(VAULT, path, AAD, expect_size=data_size) as reader:
            reader.seek(data_size - 100)
            assert reader.read() == piece[-100:]
            reader.seek(0)
            while reader.read(256 * 1024):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while reading a {data_size}-byte file"
