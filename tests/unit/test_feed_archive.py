"""Archive structure checks: complete archives pass; empty, cut, garbled or mislabelled fail;
archive bombs are refused naming the limit, without inflating what they declare; a zip may
not hold one path twice."""

from __future__ import annotations

import gzip
import io
import os
import warnings
import zipfile
import zlib

import pytest

from octo_appliance.exceptions import ValidationFailed
from octo_appliance.feed.archive import check_archive
from octo_appliance.feed.limits import MIB, ArchiveLimits
from tests.packages_support import raw_zip, tar_bytes, tar_gz_bomb, zip_bomb, zip_bytes

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


# ---------------------------------------------------------------- archive bombs and duplicates


class CountingReader(io.BytesIO):
    """Counts the archive bytes the check reads: proof it stopped early."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        piece = super().read(size)
        self.bytes_read += len(piece)
        return piece

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        count = super().readinto(buffer)
        self.bytes_read += count
        return count


def refused_bomb(data: bytes, fmt: str, limits: ArchiveLimits | None = None) -> tuple[str, int]:
    stream = CountingReader(data)
    with pytest.raises(ValidationFailed) as caught:
        check_archive(stream, fmt, len(data), limits)
    assert caught.value.hint
    return caught.value.message, stream.bytes_read


def test_a_1mb_zip_holding_1gib_is_refused_from_its_declared_sizes():
    bomb = zip_bomb(1024)
    assert len(bomb) < 1.1 * MIB
    message, read = refused_bomb(bomb, "zip")
    assert "expands to 1.0 GiB" in message
    assert "over 200 times its size" in message and "max_expansion_ratio" in message
    assert read < 64 * 1024  # the directory and the local header: nothing was inflated


def test_the_total_limit_is_named_when_it_is_the_one_passed():
    message, _read = refused_bomb(zip_bomb(100), "zip", ArchiveLimits(64 * MIB, 10_000))
    assert "over the limit of 64.0 MiB (setting max_expanded_mb)" in message


def test_a_2mb_tar_gz_holding_2gib_stops_at_the_first_header():
    bomb = tar_gz_bomb(2048)
    assert len(bomb) < 2.2 * MIB
    message, read = refused_bomb(bomb, "tar.gz")
    assert "gzip-compressed tar archive expands to more than 2.0 GiB" in message
    assert "max_expansion_ratio" in message
    assert read < len(bomb) // 10  # stopped before inflating the member


def test_zeros_hidden_after_the_end_of_a_tar_gz_stop_the_check_at_the_cap():
    bomb = tar_gz_bomb(1024, after_the_end=True)
    limits = ArchiveLimits(16 * 1024 * MIB, 200)
    message, read = refused_bomb(bomb, "tar.gz", limits)
    assert "max_expansion_ratio" in message
    assert read < len(bomb) // 2  # about 200 MiB of the 1 GiB was inflated, not all of it


def test_small_packages_of_zeros_pass_whatever_their_ratio():
    assert check(zip_bomb(16), "zip").entries == 1  # 16 MiB in 17 KiB, below the 64 MiB floor
    assert check(tar_gz_bomb(16), "tar.gz").entries == 1


def test_a_zip_holding_a_path_twice_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it writes
        twice = zip_bytes({"app/a.txt": b"one"})
        buffer = io.BytesIO(twice)
        with zipfile.ZipFile(buffer, "a") as archive:
            archive.writestr("app/a.txt", b"two")
    assert "holds the entry 'app/a.txt' more than once" in refused(buffer.getvalue(), "zip")
    # the same path spelt differently is the same file to an extractor
    spelt = zip_bytes({"app/a.txt": b"one", "./app//a.txt": b"two"})
    assert "more than once" in refused(spelt, "zip")
    backslash = zip_bytes({"app/a.txt": b"one", "app\\a.txt": b"two"})
    assert "more than once" in refused(backslash, "zip")


def test_overlapping_zip_entries_are_refused():
    data = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = data.compress(b"x" * 1000) + data.flush()
    entry = ("a.txt", deflated, zlib.crc32(b"x" * 1000), 1000)
    assert check(raw_zip([entry]), "zip").entries == 1
    message = refused(raw_zip([entry], aliases=(("b.txt", 0),)), "zip")
    assert "overlap" in message


def test_local_header_sizes_that_disagree_with_the_directory_are_refused():
    lying = bytearray(ZIP)
    # the first local header's uncompressed size (offset 22) is not the directory's
    lying[22:26] = (10**6).to_bytes(4, "little")
    assert "differ from the central directory" in refused(bytes(lying), "zip")
