"""Random-access reading of a sealed file's plaintext, one verified chunk at a time.

:func:`octo_appliance.vault.files.open_sealed` reads front to back; a zip's central directory
sits at the end and a tar reader skips member data by seeking, so the feed needs to seek. A
sealed file's chunks have a fixed size, so chunk ``i`` starts at a known offset and the last
chunk (the only one sealed with ``last = 1``) is known from the file size. Every chunk read is
authenticated exactly as ``open_sealed`` does it: a cut, extended, reordered or altered file
raises :class:`VaultError` when the affected chunk is read, never returns wrong bytes.
Memory: one chunk (64 KiB by default) whatever the file size. It lives beside
:mod:`octo_appliance.vault.files` because it reads that format's internals; the package feed
is its user.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from octo_appliance.exceptions import VaultError
from octo_appliance.vault import Vault
from octo_appliance.vault.files import (  # the file format's own helpers, kept in one place
    HEADER_BYTES,
    TAG_BYTES,
    _chunk_aad,
    _nonce,
    read_header,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


def _damaged(name: str, where: str) -> VaultError:
    return VaultError(
        f"sealed file {name} does not open {where}: it was altered, truncated or reordered, "
        "or is opened under another name",
        hint="restore the file from a backup (or delete and upload the package again)",
    )


class SealedReader(io.RawIOBase):
    """A seekable, read-only view of a sealed file's plaintext; ``size`` is known at once."""

    def __init__(self, vault: Vault, path: Path | str, aad: bytes) -> None:
        super().__init__()
        self.path = Path(path)
        self._name = self.path.name
        self._handle = open(self.path, "rb")  # noqa: SIM115 -- closed by close()
        try:
            header = read_header(self._handle, self._name)
            self._cipher = AESGCM(header.unwrap(vault, self._name))
            self._binding = header.binding(aad)
            self._chunk = header.chunk_size
            self._block = self._chunk + TAG_BYTES
            body = os.fstat(self._handle.fileno()).st_size - HEADER_BYTES
            self._count = max(1, -(-body // self._block))
            last_length = body - (self._count - 1) * self._block - TAG_BYTES
            if last_length < 0:
                raise _damaged(self._name, "(its last chunk is cut short)")
            #: plaintext bytes in the file
            self.size = (self._count - 1) * self._chunk + last_length
        except BaseException:
            self._handle.close()
            raise
        self._pos = 0
        self._index = -1
        self._plain = b""

    # -- io.RawIOBase ----------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if target < 0:
            raise OSError(22, "negative seek position")
        self._pos = target
        return target

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self.size:
            index, offset = divmod(self._pos, self._chunk)
            plain = self._load(index)
            take = min(len(view) - done, len(plain) - offset)
            view[done : done + take] = plain[offset : offset + take]
            done += take
            self._pos += take
        return done

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
            self._plain = b""
        super().close()

    @property
    def chunk_size(self) -> int:
        return self._chunk

    # -- chunks ----------------------------------------------------------------------------------

    def _load(self, index: int) -> bytes:
        if index == self._index:
            return self._plain
        self._handle.seek(HEADER_BYTES + index * self._block)
        sealed = self._handle.read(self._block)
        last = index == self._count - 1
        try:
            plain = self._cipher.decrypt(
                _nonce(index), sealed, _chunk_aad(self._binding, index, last)
            )
        except (InvalidTag, ValueError):
            raise _damaged(self._name, f"at chunk {index}") from None
        self._index, self._plain = index, plain
        return plain


def open_reader(
    vault: Vault, path: Path | str, aad: bytes, *, expect_size: int | None = None
) -> BinaryIO:
    """A buffered, seekable plaintext reader; ``expect_size`` catches a file cut at a chunk
    boundary (or swapped for another) before any byte is returned."""
    raw = SealedReader(vault, path, aad)
    if expect_size is not None and raw.size != expect_size:
        raw.close()
        raise _damaged(
            raw.path.name, f"(it holds {raw.size} bytes, the feed recorded {expect_size})"
        )
    return io.BufferedReader(raw, buffer_size=raw.chunk_size)
