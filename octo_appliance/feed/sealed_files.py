"""Where sealed packages live and how one is received: sealed as it arrives, checked, kept.

Layout under the data dir::

    files/packages/<token>.sealed            a package the database points at
    files/packages/.incoming/<token>.sealed  received and sealed, not yet checked or recorded

``<token>`` is random: file names say nothing about the package. Each file is sealed with the
associated data ``packages/<id>/<version>/<token>``, so a file moved to another name or
another package's row does not open. A received file is written under ``.incoming`` by a
:class:`~octo_appliance.vault.files.SealedWriter` (which itself writes a ``.sealing``
temporary first), checked there, and moved up by :func:`promote` only in the transaction that
records it. Anything left in ``.incoming`` by a crash is removed by :func:`sweep_incoming`, at
every start (``serve``) and, for files hours old, before each upload.

A full disk while receiving is a 507 naming the data dir and the space left, measured the
moment the write failed; the partial file is removed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from octo_appliance.exceptions import PayloadTooLarge
from octo_appliance.feed.archive import check_archive
from octo_appliance.feed.limits import ArchiveLimits
from octo_appliance.feed.names import PackageName
from octo_appliance.filesystem.disk_space import storage_error
from octo_appliance.filesystem.durable import fsync_dir
from octo_appliance.vault import Vault
from octo_appliance.vault.files import FILES_DIR_NAME, SealedWriter
from octo_appliance.vault.seekable import open_reader

PACKAGES_DIR_NAME = "packages"
INCOMING_DIR_NAME = ".incoming"
SUFFIX = ".sealed"
#: incoming files older than this belong to no running upload (an upload refreshes its file's
#: modification time with every write)
STALE_INCOMING_SECONDS = 6 * 3600
MIB = 1024 * 1024


def packages_dir(data_dir: Path) -> Path:
    return data_dir / FILES_DIR_NAME / PACKAGES_DIR_NAME


def incoming_dir(data_dir: Path) -> Path:
    return packages_dir(data_dir) / INCOMING_DIR_NAME


def file_name_of(token: str) -> str:
    """The ``Package.file_name`` of a kept file: relative to the data dir."""
    return f"{FILES_DIR_NAME}/{PACKAGES_DIR_NAME}/{token}{SUFFIX}"


def token_of(file_name: str) -> str:
    name = Path(file_name).name
    if not name.endswith(SUFFIX) or Path(file_name).parent.as_posix() != (
        f"{FILES_DIR_NAME}/{PACKAGES_DIR_NAME}"
    ):
        raise ValueError(f"'{file_name}' is not a package file name")
    return name[: -len(SUFFIX)]


def sealed_path(data_dir: Path, file_name: str) -> Path:
    """The kept file of ``file_name`` (only names :func:`file_name_of` makes are accepted)."""
    return packages_dir(data_dir) / f"{token_of(file_name)}{SUFFIX}"


def file_aad(package_id: str, version: str, token: str) -> bytes:
    return f"packages/{package_id}/{version}/{token}".encode()


def limit_message(limit_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the package is larger than the feed's limit of {limit_bytes // MIB} MiB "
        "(setting max_package_mb)",
        hint="upload a smaller package, or raise max_package_mb (docs/configuration.md)",
    )


@dataclass(frozen=True)
class ReceivedPackage:
    """A package sealed under ``.incoming`` and checked, waiting to be recorded."""

    name: PackageName
    sha256: str
    size: int
    token: str
    entries: int

    @property
    def file_name(self) -> str:
        return file_name_of(self.token)


@contextmanager
def disk_full_as_507(data_dir: Path) -> Iterator[None]:
    """A full disk is a 507, measured now: before the partial file is removed."""
    try:
        yield
    except OSError as exc:
        full = storage_error(exc, data_dir, "storing the package")
        if full is None:
            raise
        raise full from exc


class IncomingPackage:
    """Seals a package's bytes as they arrive, hashing and counting them on the way.

    Synchronous (call it from a worker thread). :meth:`finish` seals the last chunk and checks
    the archive from the sealed file; :meth:`abort` (or a failed ``finish``) leaves nothing.
    """

    def __init__(
        self,
        vault: Vault,
        data_dir: Path,
        name: PackageName,
        limit_bytes: int | None = None,
        limits: ArchiveLimits | None = None,
    ) -> None:
        self.name = name
        self.token = secrets.token_hex(16)
        self.size = 0
        self._vault = vault
        self._data_dir = data_dir
        self._limit = limit_bytes
        self._limits = limits
        self._sha = hashlib.sha256()
        self._aad = file_aad(name.package_id, name.version, self.token)
        self.path = incoming_dir(data_dir) / f"{self.token}{SUFFIX}"
        with disk_full_as_507(data_dir):
            self._writer = SealedWriter(vault, self.path, self._aad)

    def write(self, data: bytes | memoryview) -> None:
        if self._limit is not None and self.size + len(data) > self._limit:
            raise limit_message(self._limit)
        with disk_full_as_507(self._data_dir):
            self._writer.write(data)
        self._sha.update(data)
        self.size += len(data)

    def finish(self) -> ReceivedPackage:
        try:
            with disk_full_as_507(self._data_dir):
                self._writer.close()
            with open_reader(self._vault, self.path, self._aad, expect_size=self.size) as reader:
                summary = check_archive(reader, self.name.format, self.size, self._limits)
        except BaseException:
            self.abort()
            raise
        return ReceivedPackage(
            self.name, self._sha.hexdigest(), self.size, self.token, summary.entries
        )

    def abort(self) -> None:
        self._writer.abort()
        self.path.unlink(missing_ok=True)


def promote(data_dir: Path, received: ReceivedPackage) -> Path:
    """Move a checked package from ``.incoming`` to its kept place (same file system)."""
    target = sealed_path(data_dir, received.file_name)
    os.replace(incoming_dir(data_dir) / f"{received.token}{SUFFIX}", target)
    fsync_dir(target.parent)
    return target


def discard(data_dir: Path, received: ReceivedPackage) -> None:
    """Remove a received package wherever it is (incoming or kept): its recording failed."""
    (incoming_dir(data_dir) / f"{received.token}{SUFFIX}").unlink(missing_ok=True)
    sealed_path(data_dir, received.file_name).unlink(missing_ok=True)


def remove_kept(data_dir: Path, file_name: str) -> None:
    sealed_path(data_dir, file_name).unlink(missing_ok=True)


def sweep_incoming(data_dir: Path, older_than: float = STALE_INCOMING_SECONDS) -> int:
    """Remove files a crashed upload left in ``.incoming``; returns how many. At start no
    upload is running, so ``older_than=0`` removes every leftover."""
    directory = incoming_dir(data_dir)
    if not directory.is_dir():
        return 0
    cutoff = time.time() - older_than
    removed = 0
    for entry in os.scandir(directory):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime <= cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def store_bytes(vault: Vault, data_dir: Path, name: PackageName, data: bytes) -> ReceivedPackage:
    """Seal and check a whole package held in memory (tests, small imports)."""
    incoming = IncomingPackage(vault, data_dir, name)
    try:
        incoming.write(data)
    except BaseException:
        incoming.abort()
        raise
    return incoming.finish()
