"""The sealed file format: chunked AES-256-GCM under a per-file data key (see docs/vault.md).

Layout (integers big-endian)::

    magic "OCTOSEAL" (8) | version (1) | chunk size (4) | file id (16)    -- the fixed header
    key id, ASCII hex (16) | wrap nonce (12) | wrapped data key (32 + 16)  -- the key block
    chunk 0 | chunk 1 | ... | last chunk                                  -- ciphertext + tag

Every file has its own random 256-bit data key, wrapped (AES-256-GCM) under a secret derived
from the master key, with the fixed header and key id as associated data. Chunk ``i`` is sealed
under the data key with nonce ``i`` and associated data ``H || i || last``, where ``H`` is
SHA-256 of the fixed header and the caller's associated data (a logical name). Every chunk but
the last holds exactly ``chunk size`` plaintext bytes; the last holds 0..chunk size and is the
only one sealed with ``last = 1``. So a truncated, extended, reordered or spliced file, a chunk
from another file, or a file opened under another name fails to open (:class:`VaultError`).

Why a data key: master-key rotation rewraps 48 bytes per file and copies the ciphertext
verbatim, instead of decrypting and re-encrypting every package. Memory stays flat: readers and
writers hold one or two chunks at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from octo_appliance.exceptions import VaultError
from octo_appliance.filesystem.durable import fsync_dir, publish_once
from octo_appliance.vault.values import Vault

MAGIC = b"OCTOSEAL"
VERSION = 1
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
#: Where the appliance keeps its sealed files, under the data dir; rotation walks it.
FILES_DIR_NAME = "files"
#: Suffix of a :class:`SealedWriter`'s temporary file until it is renamed into place.
WRITING_SUFFIX = ".sealing"
WRAP_PURPOSE = "file-key-wrap"

_FIXED = struct.Struct(">8sBI16s")  # magic, version, chunk size, file id
_KEY_BLOCK = struct.Struct(">16s12s48s")  # key id, wrap nonce, wrapped data key
HEADER_BYTES = _FIXED.size + _KEY_BLOCK.size
TAG_BYTES = 16
_COPY_BYTES = 1024 * 1024


class FileHeader:
    """A parsed header; ``data_key`` is filled in once unwrapped."""

    def __init__(
        self, chunk_size: int, file_id: bytes, key_id: str, wrap_nonce: bytes, wrapped: bytes
    ) -> None:
        self.chunk_size = chunk_size
        self.file_id = file_id
        self.key_id = key_id
        self.wrap_nonce = wrap_nonce
        self.wrapped = wrapped

    def fixed_bytes(self) -> bytes:
        return _FIXED.pack(MAGIC, VERSION, self.chunk_size, self.file_id)

    def key_block_aad(self) -> bytes:
        return self.fixed_bytes() + self.key_id.encode("ascii")

    def to_bytes(self) -> bytes:
        key_id = self.key_id.encode("ascii")
        return self.fixed_bytes() + _KEY_BLOCK.pack(key_id, self.wrap_nonce, self.wrapped)

    def binding(self, aad: bytes) -> bytes:
        """``H``: the fixed header and the caller's associated data, bound into every chunk."""
        digest = hashlib.sha256(b"octo-sealed-file/v1\0")
        digest.update(self.fixed_bytes())
        digest.update(len(aad).to_bytes(8, "big"))
        digest.update(aad)
        return digest.digest()

    @classmethod
    def wrap_new(cls, vault: Vault, chunk_size: int) -> tuple[FileHeader, bytes]:
        """A header for a new file under the vault's current key, and its data key."""
        data_key = AESGCM.generate_key(bit_length=256)
        header = cls(chunk_size, secrets.token_bytes(16), vault.current_key_id, b"", b"")
        header.rewrap(vault, data_key)
        return header, data_key

    def rewrap(self, vault: Vault, data_key: bytes) -> None:
        """Wrap ``data_key`` under the vault's current key (new nonce)."""
        self.key_id = vault.current_key_id
        self.wrap_nonce = secrets.token_bytes(12)
        cipher = vault.derived_cipher(self.key_id, WRAP_PURPOSE)
        self.wrapped = cipher.encrypt(self.wrap_nonce, data_key, self.key_block_aad())

    def unwrap(self, vault: Vault, name: str) -> bytes:
        cipher = vault.derived_cipher(self.key_id, WRAP_PURPOSE)  # raises if the key is absent
        try:
            return cipher.decrypt(self.wrap_nonce, self.wrapped, self.key_block_aad())
        except InvalidTag:
            raise VaultError(
                f"the header of sealed file {name} was altered",
                hint="restore the file from a backup",
            ) from None


def _not_sealed(name: str) -> VaultError:
    return VaultError(
        f"{name} is not a sealed file (or its header is cut short)",
        hint="only files written by the appliance can be opened; restore it from a backup",
    )


def read_header(handle: BinaryIO, name: str) -> FileHeader:
    raw = handle.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES or not raw.startswith(MAGIC):
        raise _not_sealed(name)
    _magic, version, chunk_size, file_id = _FIXED.unpack_from(raw, 0)
    if version != VERSION:
        raise VaultError(
            f"sealed file {name} has format version {version}; this appliance reads {VERSION}",
            hint="open it with the appliance version that wrote it",
        )
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise VaultError(
            f"the header of sealed file {name} was altered (chunk size)",
            hint="restore the file from a backup",
        )
    key_id_raw, wrap_nonce, wrapped = _KEY_BLOCK.unpack_from(raw, _FIXED.size)
    try:
        key_id = key_id_raw.decode("ascii")
    except UnicodeDecodeError:
        raise VaultError(
            f"the header of sealed file {name} was altered (key id)",
            hint="restore the file from a backup",
        ) from None
    return FileHeader(chunk_size, file_id, key_id, wrap_nonce, wrapped)


def key_id_of_file(path: Path | str) -> str:
    """The id of the master key a sealed file's data key is wrapped with (no key needed)."""
    path = Path(path)
    with open(path, "rb") as handle:
        return read_header(handle, path.name).key_id


def _chunk_aad(binding: bytes, index: int, last: bool) -> bytes:
    return binding + index.to_bytes(8, "big") + (b"\1" if last else b"\0")


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _temp_beside(path: Path, suffix: str) -> tuple[Path, BinaryIO]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return tmp, os.fdopen(fd, "wb")


def _commit(tmp: Path, handle: BinaryIO, path: Path, *, exclusive: bool = False) -> bool:
    """fsync, rename over ``path`` and fsync the directory: all of the new file or none.

    ``exclusive``: only if nothing is at ``path`` yet (:func:`publish_once`); False when
    another writer was first (its file stays, ours is dropped)."""
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    if exclusive:
        return publish_once(tmp, path)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return True


@contextlib.contextmanager
def _replacing(path: Path, suffix: str) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` that replaces it when the block ends without an
    exception (:func:`_commit`); after an exception it is removed and ``path`` is untouched."""
    tmp, handle = _temp_beside(path, suffix)
    try:
        yield handle
        _commit(tmp, handle, path)
    except BaseException:
        handle.close()
        tmp.unlink(missing_ok=True)
        raise


class SealedWriter:
    """Writes a sealed file; it appears at ``path`` only when :meth:`close` succeeds.

    Use as a context manager: an exception inside the block discards the temporary file and
    leaves any existing file at ``path`` untouched. ``exclusive``: the file is created only if
    none is at ``path`` by then (``created`` says whether this writer's file is the one).
    """

    def __init__(
        self,
        vault: Vault,
        path: Path | str,
        aad: bytes,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        exclusive: bool = False,
    ) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be 1..{MAX_CHUNK_SIZE}")
        self.path = Path(path)
        self.size = 0
        self._chunk_size = chunk_size
        self._exclusive = exclusive
        self.created = False
        header, data_key = FileHeader.wrap_new(vault, chunk_size)
        self._cipher = AESGCM(data_key)
        self._binding = header.binding(aad)
        self._index = 0
        self._buffer = bytearray()
        self._tmp, self._handle = _temp_beside(self.path, WRITING_SUFFIX)
        self._done = False
        self._handle.write(header.to_bytes())

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._done:
            raise ValueError("write to a closed SealedWriter")
        view = memoryview(data).cast("B")
        written = len(view)
        while view:
            if len(self._buffer) == self._chunk_size:
                # More data follows, so the full buffer is not the last chunk.
                self._emit(last=False)
            take = self._chunk_size - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
        self.size += written
        return written

    def _emit(self, *, last: bool) -> None:
        aad = _chunk_aad(self._binding, self._index, last)
        self._handle.write(self._cipher.encrypt(_nonce(self._index), bytes(self._buffer), aad))
        self._index += 1
        self._buffer.clear()

    def close(self) -> None:
        """Seal the last chunk and move the file into place."""
        if self._done:
            return
        try:
            self._emit(last=True)
            self.created = _commit(self._tmp, self._handle, self.path, exclusive=self._exclusive)
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Discard everything written; ``path`` is left as it was."""
        self._done = True
        try:
            self._handle.close()  # flushes: fails again when the disk is full
        except OSError:
            pass  # the descriptor is closed all the same
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> SealedWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_sealed(vault: Vault, path: Path | str, aad: bytes) -> Iterator[bytes]:
    """Yield the plaintext of a sealed file chunk by chunk, each chunk verified.

    A problem anywhere raises :class:`VaultError` at that point of the iteration; truncation is
    only known at the end. Consumers that must not act on part of a file (unpacking a package)
    should write to a temporary place and commit once the iteration finished, as
    :func:`unseal_file` does.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        header = read_header(handle, path.name)
        cipher = AESGCM(header.unwrap(vault, path.name))
        binding = header.binding(aad)
        block = header.chunk_size + TAG_BYTES
        current = handle.read(block)
        index = 0
        while True:
            following = handle.read(block) if len(current) == block else b""
            last = not following
            try:
                plain = cipher.decrypt(_nonce(index), current, _chunk_aad(binding, index, last))
            except (InvalidTag, ValueError):
                raise VaultError(
                    f"sealed file {path.name} does not open at chunk {index}: it was altered, "
                    "truncated or reordered, or is opened under another name",
                    hint="restore the file from a backup",
                ) from None
            yield plain
            if last:
                return
            current = following
            index += 1


def read_sealed_file(vault: Vault, path: Path | str, aad: bytes) -> bytes:
    """The whole plaintext of a (small) sealed file."""
    return b"".join(open_sealed(vault, path, aad))


def seal_file(
    vault: Vault,
    src_path: Path | str,
    dst_path: Path | str,
    aad: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Seal the plaintext file ``src_path`` to ``dst_path``; return the plaintext size."""
    with (
        open(src_path, "rb") as source,
        SealedWriter(vault, dst_path, aad, chunk_size=chunk_size) as writer,
    ):
        while piece := source.read(chunk_size):
            writer.write(piece)
    return writer.size


def unseal_file(vault: Vault, src_path: Path | str, dst_path: Path | str, aad: bytes) -> int:
    """Write the plaintext of a sealed file to ``dst_path``, only once all of it verified."""
    dst = Path(dst_path)
    size = 0
    with _replacing(dst, ".unsealing") as handle:
        for piece in open_sealed(vault, src_path, aad):
            handle.write(piece)
            size += len(piece)
    return size


REKEY_SUFFIX = ".rekeying"


def rewrap_file(vault: Vault, path: Path | str) -> bool:
    """Rewrap a sealed file's data key under the vault's current key.

    Writes the new header and the untouched ciphertext to a temporary file beside it, then
    renames it over the original: at every instant the file on disk opens with one of the
    ring's keys. Returns False when the file already uses the current key.
    """
    path = Path(path)
    with open(path, "rb") as source:
        header = read_header(source, path.name)
        if header.key_id == vault.current_key_id:
            return False
        data_key = header.unwrap(vault, path.name)
        header.rewrap(vault, data_key)
        with _replacing(path, REKEY_SUFFIX) as handle:
            handle.write(header.to_bytes())
            while piece := source.read(_COPY_BYTES):
                handle.write(piece)
    return True


def is_sealed_file(path: Path) -> bool:
    """True when ``path`` is a regular file starting with the sealed-file magic."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False
