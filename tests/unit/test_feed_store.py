"""``PackageFeed``, the engine's view of the feed: versions in semantic order, look-ups, and
plaintext readers that notice a package replaced or damaged since it was looked up."""

from __future__ import annotations

import hashlib
import os

import pytest

from octo_appliance.db.packages import Package
from octo_appliance.exceptions import NotFound, VaultError
from octo_appliance.feed.names import parse_file_name
from octo_appliance.feed.reader import PackageFeed, PackageRecord
from octo_appliance.feed.records import save_package
from octo_appliance.feed.sealed_files import sealed_path, store_bytes
from tests.packages_support import archive_for


@pytest.fixture
def appliance(octo_appliance_factory):  # type: ignore[no-untyped-def]
    return octo_appliance_factory().appliance


def push(appliance, file_name: str, data: bytes | None = None, replace: bool = False) -> bytes:  # type: ignore[no-untyped-def]
    data = data if data is not None else archive_for(file_name, {"f": os.urandom(1000)})
    received = store_bytes(appliance.vault, appliance.data_dir, parse_file_name(file_name), data)
    with appliance.db.atomic():
        save_package(appliance.data_dir, received, replace=replace, uploaded_by="test")
    return data


def test_versions_find_latest_and_by_sha(appliance):
    feed = appliance.feed
    assert isinstance(feed, PackageFeed) and appliance.feed is feed
    for version in ["1.2.0", "1.10.0", "1.0.0-rc.1", "1.0.0", "2.0.0-alpha", "1.0.0+build.2"]:
        push(appliance, f"Acme.Web.{version}.zip")
    newest = push(appliance, "Other.9.9.9.tgz")

    versions = [record.version for record in feed.versions("Acme.Web")]
    assert versions == ["1.0.0-rc.1", "1.0.0", "1.0.0+build.2", "1.2.0", "1.10.0", "2.0.0-alpha"]
    assert feed.versions("Nope") == []
    assert feed.latest("Acme.Web").version == "2.0.0-alpha"
    assert feed.latest("Nope") is None

    record = feed.find("Other", "9.9.9")
    assert record == PackageRecord(
        id=record.id,
        package_id="Other",
        version="9.9.9",
        format="tar.gz",
        sha256=hashlib.sha256(newest).hexdigest(),
        size=len(newest),
        file_name="Other.9.9.9.tar.gz",
    )
    assert feed.find("Other", "1.0.0") is None
    assert feed.by_sha256(record.sha256.upper()) == record
    assert feed.by_sha256("0" * 64) is None


def test_plaintext_readers(appliance):
    data = push(appliance, "MyApp.1.0.0.tar", archive_for("x.tar", {"f": os.urandom(300_000)}))
    feed = appliance.feed
    record = feed.find("MyApp", "1.0.0")
    assert feed.read_plaintext(record) == data
    with feed.open_plaintext(record) as reader:
        reader.seek(len(data) - 5000)
        assert reader.read() == data[-5000:]
        reader.seek(0)
        digest = hashlib.sha256()
        while piece := reader.read(65536):
            digest.update(piece)
    assert digest.hexdigest() == record.sha256


def test_a_replaced_or_deleted_package_is_not_read_from_an_old_record(appliance):
    push(appliance, "MyApp.1.0.0.zip")
    old = appliance.feed.find("MyApp", "1.0.0")
    push(appliance, "MyApp.1.0.0.zip", replace=True)
    with pytest.raises(NotFound, match="replaced"):
        appliance.feed.open_plaintext(old)
    new = appliance.feed.find("MyApp", "1.0.0")
    assert new.id == old.id and new.sha256 != old.sha256
    assert appliance.feed.read_plaintext(new)


def test_a_damaged_sealed_file_is_refused(appliance):
    push(appliance, "MyApp.1.0.0.zip", archive_for("x.zip", {"f": os.urandom(200_000)}))
    record = appliance.feed.find("MyApp", "1.0.0")
    path = sealed_path(appliance.data_dir, Package.get_by_id(record.id).file_name)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(VaultError):
        appliance.feed.read_plaintext(record)
    path.write_bytes(bytes(raw[: len(raw) // 2]))  # cut short: refused before a byte is read
    with pytest.raises(VaultError, match="recorded"):
        appliance.feed.open_plaintext(record)
