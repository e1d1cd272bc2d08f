"""Extraction: real zip, tar and tar.gz archives in, the files on disk (or a refusal) out;
on small tmpfs disks the test mounts, a package that cannot fit is refused before anything is
written and a disk that fills anyway says "no space left on <folder>"."""

from __future__ import annotations

import io
import os
import stat
import zipfile
import zlib
from pathlib import Path

import pytest
from octo_runner.cancellation import CancelToken
from octo_runner.conventions import Canceled
from octo_runner.conventions.extract import UnsafeEntry, extract
from octo_runner.errors import RunnerError

from tests.packages_support import raw_zip, tar_gz_bomb, zip_bomb
from tests.tmpfs import mounted_tmpfs

from .conventions_support import Captured, Entry, build, file, folder, hardlink, special, symlink
from .conventions_support import tree as read_tree

FORMATS = ["zip", "tar", "tar.gz", "tgz"]

SAFE_CASES: list[tuple[str, list[Entry], dict[str, str]]] = [
    (
        "files, folders and inside links",
        [
            file("a.txt", "A"),
            folder("d"),
            file("d/b.txt", "B"),
            symlink("d/link", "b.txt"),
            symlink("up", "d/b.txt"),
            symlink("d/self", "../d"),
        ],
        {
            "a.txt": "A",
            "d": "/",
            "d/b.txt": "B",
            "d/link": "-> b.txt",
            "d/self": "-> ../d",
            "up": "-> d/b.txt",
        },
    ),
    (
        "parents created, ./ and empty segments ignored",
        [file("./x//y/z.txt", "Z"), folder("./")],
        {"x": "/", "x/y": "/", "x/y/z.txt": "Z"},
    ),
    (
        "a later entry of the same name wins",
        [file("c.txt", "old"), file("c.txt", "new")],
        {"c.txt": "new"},
    ),
    (
        "a link to a missing target inside is allowed",
        [symlink("dangling", "missing/file")],
        {"dangling": "-> missing/file"},
    ),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("entries", "expected"), [c[1:] for c in SAFE_CASES], ids=[c[0] for c in SAFE_CASES]
)
def test_extracts(tmp_path: Path, fmt: str, entries: list[Entry], expected: dict[str, str]) -> None:
    archive = tmp_path / "package"
    archive.write_bytes(build(entries, fmt))
    destination = tmp_path / "apps" / "Dev" / "App" / "1.0.0"
    captured = Captured()
    counts = extract(str(archive), fmt, str(destination), captured.writer, CancelToken())
    assert read_tree(destination) == expected
    assert counts.entries == len(expected)
    assert os.listdir(destination.parent) == ["1.0.0"]  # no temporary folder left
    assert f"Extracted {len(expected)} entries" in captured.logs("info")[0]


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_hard_links_become_copies(tmp_path: Path, fmt: str) -> None:
    archive = tmp_path / "package"
    archive.write_bytes(build([file("a.txt", "A"), hardlink("b/c.txt", "./a.txt")], fmt))
    destination = tmp_path / "out"
    extract(str(archive), fmt, str(destination), Captured().writer, CancelToken())
    assert read_tree(destination) == {"a.txt": "A", "b": "/", "b/c.txt": "A"}
    assert (destination / "a.txt").stat().st_ino != (destination / "b/c.txt").stat().st_ino


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("mode", "expected"),
    [(0o755, 0o755), (0o644, 0o644), (0o4755, 0o755), (0o400, 0o600), (0o000, 0o600)],
)
def test_permission_bits(tmp_path: Path, fmt: str, mode: int, expected: int) -> None:
    archive = tmp_path / "package"
    archive.write_bytes(build([file("run.sh", "#!/bin/sh\n", mode)], fmt))
    destination = tmp_path / "out"
    extract(str(archive), fmt, str(destination), Captured().writer, CancelToken())
    assert stat.S_IMODE((destination / "run.sh").stat().st_mode) == expected


UNSAFE_CASES: list[tuple[str, list[Entry], str, str, tuple[str, ...]]] = [
    ("dot-dot", [file("ok.txt"), file("../evil.txt", "x")], "../evil.txt", "climbs out", ()),
    ("nested dot-dot", [file("a/../../evil.txt", "x")], "a/../../evil.txt", "climbs out", ()),
    ("absolute", [file("/tmp/evil.txt", "x")], "/tmp/evil.txt", "absolute path", ()),
    ("drive letter", [file("C:/evil.txt", "x")], "C:/evil.txt", "absolute path", ()),
    (
        "backslash dot-dot in zip",
        [file("..\\evil.txt", "x")],
        "..\\evil.txt",
        "climbs out",
        ("tar", "tar.gz", "tgz"),
    ),
    ("absolute link", [symlink("l", "/etc/passwd")], "l", "absolute path", ()),
    ("link out", [symlink("d/l", "../../outside")], "d/l", "outside the package", ()),
    (
        "link out through another link",
        [folder("a"), symlink("a/b", ".."), symlink("a/c", "b/..")],
        "a/c",
        "leads outside",
        (),
    ),
    (
        "entry under a link",
        [folder("d"), symlink("s", "d"), symlink("s/x", "y")],
        "s/x",
        "lies under the link 's'",
        (),
    ),
    ("hard link out", [hardlink("h", "../outside/secret")], "h", "climbs out", ("zip",)),
    ("absolute hard link", [hardlink("h", "/etc/passwd")], "h", "absolute", ("zip",)),
    ("hard link to nothing", [hardlink("h", "missing")], "h", "not in the package", ("zip",)),
    ("hard link to a link", [symlink("l", "x"), hardlink("h", "l")], "h", "not in the", ("zip",)),
    ("fifo", [special("pipe", "fifo")], "pipe", "fifo", ()),
    ("device", [special("dev", "chr")], "dev", "device", ()),
    ("file then folder", [file("x", "1"), file("x/y", "2")], "x/y", "a file of the same", ()),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("entries", "entry", "reason", "skip_formats"),
    [c[1:] for c in UNSAFE_CASES],
    ids=[c[0] for c in UNSAFE_CASES],
)
def test_refuses_unsafe_entries(
    tmp_path: Path,
    fmt: str,
    entries: list[Entry],
    entry: str,
    reason: str,
    skip_formats: tuple[str, ...],
) -> None:
    if fmt in skip_formats:
        pytest.skip(f"not expressible in {fmt}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep")
    archive = tmp_path / "package"
    archive.write_bytes(build(entries, fmt))
    destination = tmp_path / "apps" / "Dev" / "App" / "1.0.0"
    with pytest.raises(UnsafeEntry) as caught:
        extract(str(archive), fmt, str(destination), Captured().writer, CancelToken())
    assert caught.value.entry == entry
    assert reason in caught.value.message
    assert repr(entry) in caught.value.message and "nothing was extracted" in caught.value.message
    assert not destination.exists()
    assert os.listdir(destination.parent) == []  # the temporary folder was removed
    assert read_tree(tmp_path) == {
        "apps": "/",
        "apps/Dev": "/",
        "apps/Dev/App": "/",
        "outside": "/",
        "outside/secret": "keep",
        "package": read_tree(tmp_path)["package"],
    }


def _stored_zip(content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("ok.txt", "fine")
        archive.writestr("data.bin", content)
    return buffer.getvalue()


def _flip(data: bytes, marker: bytes) -> bytes:
    index = data.index(marker)
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


CORRUPT = [
    ("zip", b"not an archive at all", "not a readable zip archive"),
    ("tar", b"not an archive at all" * 40, "not a readable tar archive"),
    ("tar.gz", b"\x1f\x8b\x08\x00garbage", "tar"),
    ("zip", _stored_zip(b"payload-" * 100)[:150], "not a readable zip archive"),
    ("zip", _flip(_stored_zip(b"payload-" * 100), b"payload-"), "'data.bin'"),
    (  # a cut tar.gz is caught by the pass that sums the sizes, before anything is written
        "tar.gz",
        build([file("a.txt", "A" * 5000), file("b.txt", os.urandom(50000))], "tgz")[:-900],
        "not a readable tar archive: Compressed file ended",
    ),
]


@pytest.mark.parametrize(("fmt", "data", "fragment"), CORRUPT)
def test_corrupt_archives_fail_cleanly(
    tmp_path: Path, fmt: str, data: bytes, fragment: str
) -> None:
    archive = tmp_path / "package"
    archive.write_bytes(data)
    destination = tmp_path / "apps" / "App" / "1.0.0"
    with pytest.raises(RunnerError) as caught:
        extract(str(archive), fmt, str(destination), Captured().writer, CancelToken())
    assert fragment in str(caught.value)
    assert not destination.exists() and os.listdir(destination.parent) == []


def test_cancel_stops_extraction_and_cleans_up(tmp_path: Path) -> None:
    archive = tmp_path / "package"
    archive.write_bytes(build([file("a.txt", "A")], "zip"))
    cancel = CancelToken()
    cancel.cancel("canceled by SIGTERM")
    destination = tmp_path / "apps" / "1.0.0"
    with pytest.raises(Canceled):
        extract(str(archive), "zip", str(destination), Captured().writer, cancel)
    assert os.listdir(tmp_path / "apps") == []


# ---------------------------------------------------------------- disk space


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_a_package_larger_than_the_free_space_is_refused_before_extracting(
    tmp_path: Path, fmt: str
) -> None:
    archive = tmp_path / "package"
    archive.write_bytes(zip_bomb(4) if fmt == "zip" else tar_gz_bomb(4))  # 4 MiB of zeros
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        destination = disk / "apps" / "App" / "1.0.0"
        with pytest.raises(RunnerError) as caught:
            extract(str(archive), fmt, str(destination), Captured().writer, CancelToken())
        message = str(caught.value)
        assert f"no space left on {destination.parent} for the package" in message
        assert "it expands to 4.0 MiB and " in message and " is free" in message
        assert os.listdir(destination.parent) == []  # nothing was written


def test_a_disk_that_fills_while_extracting_says_no_space_left(tmp_path: Path) -> None:
    archive = tmp_path / "package"
    archive.write_bytes(build([file(f"f{n:02}.txt", "x") for n in range(60)], "zip"))
    # bytes to spare, but too few inodes: the disk fills after the free-space check passed
    with mounted_tmpfs(tmp_path / "disk", "4m", "nr_inodes=24") as disk:
        destination = disk / "apps" / "App" / "1.0.0"
        with pytest.raises(RunnerError) as caught:
            extract(str(archive), "zip", str(destination), Captured().writer, CancelToken())
        message = str(caught.value)
        assert message.startswith(f"no space left on {destination.parent} while extracting 'f")
        assert "truncated" not in message
        assert os.listdir(destination.parent) == []


def test_extraction_stops_at_the_declared_size(tmp_path: Path) -> None:
    # the entry's deflated data holds 1 MiB, its directory record says 1,000 bytes
    data = b"x" * (1024 * 1024)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = compressor.compress(data) + compressor.flush()
    archive = tmp_path / "package"
    archive.write_bytes(raw_zip([("big.txt", deflated, zlib.crc32(data[:1000]), 1000)]))
    destination = tmp_path / "apps" / "1.0.0"
    extract(str(archive), "zip", str(destination), Captured().writer, CancelToken())
    assert (destination / "big.txt").stat().st_size == 1000
