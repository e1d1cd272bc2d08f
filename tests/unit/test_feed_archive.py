"""Archive structure checks: complete archives pass; empty, cut, garbled or mislabelled fail."""

from __future__ import annotations

import gzip
import io
import os

import pytest

from octo_appliance.exceptions import ValidationFailed
from octo_appliance.feed.archive import check_archive
from tests.packages_support import tar_bytes, zip_bytes

FILES = {"app/a.txt": b"a" * 1000, "app/b.bin": os.urandom(3000), "empty": b""}
ZIP = zip_bytes(FILES)
TAR = tar_bytes(FILES)
TAR_GZ = tar_bytes(FILES, gz=True)


def check(data: bytes, fmt: str):  # type: ignore[no-untyped-def]
    return check_archive(io.BytesIO(data), fmt, len(data))


def refused(data: bytes, fmt: str) -> str:
    with pytest.raises(ValidationFailed) as caught:
        check(data, fmt)
    assert caught.value.hint
    return caught.value.message


def test_complete_archives_pass_and_count_entries():
    assert check(ZIP, "zip").entries == 3
    assert check(TAR, "tar").entries == 3
    assert check(TAR_GZ, "tar.gz").entries == 3


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz"])
def test_empty_and_random_files_are_refused(fmt):
    assert "empty" in refused(b"", fmt)
    assert "not a readable" in refused(os.urandom(4096), fmt)


def test_archives_without_entries_are_refused():
    assert "holds no files" in refused(zip_bytes({}), "zip")
    assert "holds no files" in refused(tar_bytes({}), "tar")
    assert "holds no files" in refused(tar_bytes({}, gz=True), "tar.gz")


def test_cut_zips_are_refused():
    assert "not a readable zip" in refused(ZIP[:-30], "zip")  # central directory cut
    assert "not a readable zip" in refused(ZIP[100:], "zip")  # start cut off
    damaged = bytearray(ZIP)
    damaged[0] ^= 0xFF  # the first local header's signature
    assert "local header" in refused(bytes(damaged), "zip")


def test_cut_tars_are_refused_wherever_they_are_cut():
    # in a member's data, exactly between two members, and within the end-of-archive blocks'
    # first block (the second is optional for readers, the first is not)
    first_member_end = 512 + 1024
    assert "not a readable tar" in refused(TAR[:700], "tar")
    assert "not a readable tar" in refused(TAR[:first_member_end], "tar")
    end_of_data = len(TAR.rstrip(b"\0"))
    cut_before_end_block = TAR[: ((end_of_data + 511) // 512) * 512]
    assert "not a readable tar" in refused(cut_before_end_block, "tar")
    garbled = bytearray(TAR)
    garbled[first_member_end + 100] ^= 0xFF  # the second member's header (its checksum fails)
    assert "damaged" in refused(bytes(garbled), "tar")


def test_cut_or_mislabelled_tar_gz_is_refused():
    assert "gzip-compressed tar" in refused(TAR_GZ[:-8], "tar.gz")  # CRC and length cut off
    assert "gzip-compressed tar" in refused(TAR_GZ[: len(TAR_GZ) // 2], "tar.gz")
    assert "gzip-compressed tar" in refused(gzip.compress(TAR[:700]), "tar.gz")
    assert "gzip-compressed tar" in refused(ZIP, "tar.gz")
    assert "not a readable tar" in refused(TAR_GZ, "tar")
    assert "not a readable zip" in refused(TAR, "zip")
