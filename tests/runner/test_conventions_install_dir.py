"""Copying a release folder to a custom installation directory, with and without purge."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from octo_runner.cancellation import CancelToken
from octo_runner.conventions.install_dir import check_target, install
from octo_runner.errors import RunnerError

from .conventions_support import Captured, tree


@pytest.fixture
def release(tmp_path: Path) -> Path:
    folder = tmp_path / "apps" / "Dev" / "App" / "1.0.0"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "run.sh").write_text("#!/bin/sh\n")
    (folder / "bin" / "run.sh").chmod(0o750)
    (folder / "app.conf").write_text("new")
    os.symlink("bin/run.sh", folder / "run")
    os.symlink("bin", folder / "tools")
    return folder


NEW = {
    "app.conf": "new",
    "bin": "/",
    "bin/run.sh": "#!/bin/sh\n",
    "run": "-> bin/run.sh",
    "tools": "-> bin",
}


@pytest.mark.parametrize(
    ("purge", "expected"),
    [
        (False, {**NEW, "stale.txt": "old", "data": "/", "data/keep.db": "db"}),
        (True, NEW),
    ],
)
def test_copy_with_and_without_purge(
    tmp_path: Path, release: Path, purge: bool, expected: dict[str, str]
) -> None:
    target = tmp_path / "opt" / "app"
    (target / "data").mkdir(parents=True)
    (target / "data" / "keep.db").write_text("db")
    (target / "stale.txt").write_text("old")
    (target / "app.conf").write_text("old")
    target.chmod(0o751)
    captured = Captured()
    copied = install(
        str(release), str(target), purge, str(tmp_path / "apps"), captured.writer, CancelToken()
    )
    assert tree(target) == expected
    assert stat.S_IMODE((target / "bin" / "run.sh").stat().st_mode) == 0o750
    assert stat.S_IMODE(target.stat().st_mode) == 0o751  # the directory itself stays
    assert (copied.files, copied.links, copied.purged) == (2, 2, 3 if purge else 0)
    assert f"Copied 2 files and 2 links to {target}" in captured.logs("info")


OLD = {
    "data": "/",
    "data/keep.db": "db",
    "data/cache.tmp": "tmp",
    "logs": "/",
    "logs/app.log": "log",
    "logs/2026": "/",
    "logs/2026/old.log": "old log",
    "stale.txt": "old",
    "web.config": "old config",
}


LOGS = {k: v for k, v in OLD.items() if k.startswith("logs")}


@pytest.mark.parametrize(
    ("exclusions", "kept", "purged", "kept_count"),
    [
        ([], {}, 4, 0),
        (["data"], {"data": "/", "data/keep.db": "db", "data/cache.tmp": "tmp"}, 3, 1),
        (["data/*.db"], {"data": "/", "data/keep.db": "db"}, 4, 1),
        (["logs/**", "*.config"], {**LOGS, "web.config": "old config"}, 2, 3),
        (["**/*.log"], LOGS, 3, 2),
        (["nothing/*"], {}, 4, 0),
    ],
)
def test_purge_keeps_what_matches_purge_exclusions(
    tmp_path: Path,
    release: Path,
    exclusions: list[str],
    kept: dict[str, str],
    purged: int,
    kept_count: int,
) -> None:
    target = tmp_path / "opt" / "app"
    for name, text in OLD.items():
        path = target / name
        if text == "/":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    captured = Captured()
    copied = install(
        str(release),
        str(target),
        True,
        str(tmp_path / "apps"),
        captured.writer,
        CancelToken(),
        exclusions,
    )
    assert tree(target) == {**NEW, **kept}
    assert (copied.purged, copied.kept) == (purged, kept_count)
    if exclusions:
        message = f"removed {purged} entries, kept {kept_count} matching purge_exclusions"
        assert f"Purged {target}: {message}" in captured.logs("info")


def test_a_link_in_the_target_is_replaced_not_written_through(
    tmp_path: Path, release: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("untouched")
    target = tmp_path / "opt"
    target.mkdir()
    os.symlink(secret, target / "app.conf")
    install(
        str(release), str(target), False, str(tmp_path / "apps"), Captured().writer, CancelToken()
    )
    assert secret.read_text() == "untouched"
    assert not (target / "app.conf").is_symlink()
    assert (target / "app.conf").read_text() == "new"


def test_a_folder_in_the_way_of_a_file_is_an_error(tmp_path: Path, release: Path) -> None:
    target = tmp_path / "opt"
    (target / "app.conf").mkdir(parents=True)
    with pytest.raises(RunnerError) as caught:
        install(
            str(release),
            str(target),
            False,
            str(tmp_path / "apps"),
            Captured().writer,
            CancelToken(),
        )
    assert "a folder of that name is in the way" in caught.value.message


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("/", "it is the root folder"),
        ("{tmp}", "it contains the applications folder"),
        ("{tmp}/apps", "it contains the applications folder"),
        ("{release}/sub", "it lies inside the release folder"),
        ("{release}", "it lies inside the release folder"),
    ],
)
def test_unsafe_targets_are_refused(tmp_path: Path, release: Path, where: str, reason: str) -> None:
    # checked on its own: a broken check must not get to purge "/" in a test
    target = where.format(tmp=tmp_path, release=release)
    with pytest.raises(RunnerError) as caught:
        check_target(target, str(release), str(tmp_path / "apps"))
    assert reason in caught.value.message


def test_install_checks_before_anything_changes(tmp_path: Path, release: Path) -> None:
    before = tree(tmp_path)
    with pytest.raises(RunnerError) as caught:
        install(
            str(release),
            str(tmp_path),
            True,
            str(tmp_path / "apps"),
            Captured().writer,
            CancelToken(),
        )
    assert "it contains the applications folder" in caught.value.message
    assert tree(tmp_path) == before
