"""The feed as the engine sees it: look packages up, read their plaintext (synchronous).

Every method touches the database or the disk: call them from a worker thread. Readers decrypt
one chunk at a time, so a package of any size costs the same memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from octo_appliance.db.packages import Package
from octo_appliance.exceptions import NotFound
from octo_appliance.feed.names import display_name, version_key
from octo_appliance.feed.sealed_files import file_aad, sealed_path, token_of
from octo_appliance.vault import Vault
from octo_appliance.vault.seekable import open_reader


@dataclass(frozen=True)
class PackageRecord:
    id: str
    package_id: str
    version: str
    format: str
    sha256: str
    size: int
    #: the display name, ``MyApp.1.4.0.zip`` (not where the sealed file is)
    file_name: str


def record_of(row: Package) -> PackageRecord:
    return PackageRecord(
        id=row.id,
        package_id=row.package_id,
        version=row.version,
        format=row.format,
        sha256=row.sha256,
        size=int(row.size),
        file_name=display_name(row.package_id, row.version, row.format),
    )


def _precedence(record: PackageRecord) -> tuple[object, str]:
    # every stored version is semantic; the text breaks ties between build-metadata twins
    return (version_key(record.version) or (0, 0, 0, 0, ()), record.version)


class PackageFeed:
    """Read access to the built-in feed for the engine (and the API's downloads)."""

    def __init__(self, vault: Vault, data_dir: Path) -> None:
        self.vault = vault
        self.data_dir = Path(data_dir)

    def versions(self, package_id: str) -> list[PackageRecord]:
        """Every version of ``package_id``, lowest semantic version first."""
        rows = Package.select().where(Package.package_id == package_id)
        return sorted((record_of(row) for row in rows), key=_precedence)

    def find(self, package_id: str, version: str) -> PackageRecord | None:
        row = Package.get_or_none((Package.package_id == package_id) & (Package.version == version))
        return None if row is None else record_of(row)

    def latest(self, package_id: str) -> PackageRecord | None:
        """The highest semantic version (a prerelease counts: ``2.0.0-beta`` > ``1.9.0``)."""
        versions = self.versions(package_id)
        return versions[-1] if versions else None

    def by_sha256(self, sha256: str) -> PackageRecord | None:
        """A package with this plaintext hash (the oldest upload if several share it)."""
        row = (
            Package.select()
            .where(Package.sha256 == sha256.lower())
            .order_by(Package.uploaded_at, Package.id)
            .first()
        )
        return None if row is None else record_of(row)

    def open_plaintext(self, record: PackageRecord) -> BinaryIO:
        """A seekable reader of the package's bytes (close it); 404 if it is gone or was
        replaced since ``record`` was read. A damaged file raises VaultError when read."""
        row = Package.get_or_none(Package.id == record.id)
        if row is None or row.sha256 != record.sha256:
            raise NotFound(
                f"package {record.package_id} version {record.version} is no longer in the "
                "feed as it was (deleted or replaced since)",
                hint="look the package up again",
            )
        return self.open_row(row)

    def open_row(self, row: Package) -> BinaryIO:
        aad = file_aad(row.package_id, row.version, token_of(row.file_name))
        path = sealed_path(self.data_dir, row.file_name)
        return open_reader(self.vault, path, aad, expect_size=int(row.size))

    def read_plaintext(self, record: PackageRecord) -> bytes:
        """The whole package in memory: only for small packages."""
        with self.open_plaintext(record) as reader:
            return reader.read()
