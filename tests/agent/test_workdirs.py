"""Work dirs: fresh per run, and files.fetch confined to the task's own dirs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from octo_appliance.agent.workdirs import WorkDirs
from octo_appliance.comms import CallFailed


@pytest.fixture
def work(tmp_path: Path) -> WorkDirs:
    return WorkDirs(tmp_path / "work")


def test_each_run_gets_a_fresh_private_dir(work: WorkDirs) -> None:
    first, second = work.create("tsk_1"), work.create("tsk_1")

    assert (first.name, second.name) == ("tsk_1-1", "tsk_1-2")
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    assert work.create("tsk_10").name == "tsk_10-1"  # not counted as an attempt of tsk_1
    assert work.attempts("tsk_1") == [1, 2]


@pytest.mark.parametrize("task_id", ["", "../x", "a/b", ".hidden", "-x", "x" * 101, None, "a\x00"])
def test_task_ids_that_could_escape_are_refused(work: WorkDirs, task_id: object) -> None:
    with pytest.raises(CallFailed) as refused:
        work.create(task_id)  # type: ignore[arg-type]
    assert refused.value.code == "bad_request"


def test_resolve_relative_and_absolute_paths(work: WorkDirs) -> None:
    old, latest = work.create("t"), work.create("t")
    (old / "old.txt").write_text("1")
    (latest / "sub").mkdir()
    (latest / "sub" / "new.txt").write_text("2")

    assert work.resolve_file("t", "sub/new.txt") == latest / "sub" / "new.txt"
    assert work.resolve_file("t", str(old / "old.txt")) == old / "old.txt"


def test_a_symlink_inside_the_work_dir_is_followed(work: WorkDirs) -> None:
    directory = work.create("t")
    (directory / "real.txt").write_text("x")
    os.symlink("real.txt", directory / "link.txt")

    assert work.resolve_file("t", "link.txt") == directory / "real.txt"


@pytest.mark.parametrize(
    "requested",
    ["../secret.txt", "sub/../../secret.txt", "escape-link", "escape-dir/secret.txt", "ABS"],
)
def test_paths_outside_the_work_dir_are_refused(
    work: WorkDirs, tmp_path: Path, requested: str
) -> None:
    directory = work.create("t")
    secret = tmp_path / "work" / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, directory / "escape-link")
    os.symlink(tmp_path / "work", directory / "escape-dir")
    requested = str(secret) if requested == "ABS" else requested

    with pytest.raises(CallFailed) as refused:
        work.resolve_file("t", requested)

    assert refused.value.code == "forbidden_path"


def test_another_tasks_files_are_refused(work: WorkDirs) -> None:
    mine, theirs = work.create("mine"), work.create("theirs")
    (theirs / "f").write_text("x")

    with pytest.raises(CallFailed) as refused:
        work.resolve_file("mine", str(theirs / "f"))

    assert refused.value.code == "forbidden_path"
    assert mine.exists()


def test_missing_files_and_tasks(work: WorkDirs) -> None:
    with pytest.raises(CallFailed) as no_task:
        work.resolve_file("never-ran", "x")
    work.create("t")
    with pytest.raises(CallFailed) as no_file:
        work.resolve_file("t", "nothing-here")
    with pytest.raises(CallFailed) as a_dir:
        work.resolve_file("t", ".")

    assert no_task.value.code == no_file.value.code == "not_found"
    assert a_dir.value.code in ("not_found", "forbidden_path")
