"""Retention: a journal and real release folders and cached packages in, what is left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from octo_runner.conventions import retention
from octo_runner.conventions.journal import Entry, Journal

from .conventions_support import Captured

# (project, environment, release, success); the list order is the order of installation
History = list[tuple[str, str, str, bool]]

SCENARIOS: list[tuple[str, History, int, str | None, list[int]]] = [
    (
        "keep the last two",
        [("Shop", "Dev", f"1.{n}", True) for n in range(5)],
        2,
        None,
        [3, 4],
    ),
    (
        "a newest failure is kept too",
        [
            ("Shop", "Dev", "1.0", True),
            ("Shop", "Dev", "1.1", True),
            ("Shop", "Dev", "1.2", True),
            ("Shop", "Dev", "1.3", False),
        ],
        2,
        None,
        [1, 2, 3],
    ),
    (
        "an older failure goes",
        [("Shop", "Dev", "1.0", True), ("Shop", "Dev", "1.1", False), ("Shop", "Dev", "1.2", True)],
        1,
        None,
        [2],
    ),
    (
        "per environment",
        [
            ("Shop", "Dev", "1.0", True),
            ("Shop", "Prod", "1.0", True),
            ("Shop", "Dev", "1.1", True),
            ("Shop", "Dev", "1.2", True),
        ],
        2,
        None,
        [1, 2, 3],
    ),
    (
        "one environment only",
        [
            ("Shop", "Dev", "1.0", True),
            ("Shop", "Prod", "1.0", True),
            ("Shop", "Prod", "1.1", True),
            ("Shop", "Dev", "1.1", True),
        ],
        1,
        "prod",
        [0, 2, 3],
    ),
    (
        "a forced reinstall replaces the older copy of its release",
        [("Shop", "Dev", "1.0", True), ("Shop", "Dev", "1.1", True), ("Shop", "Dev", "1.0", True)],
        2,
        None,
        [1, 2],
    ),
    (
        "other projects are untouched",
        [
            ("Blog", "Dev", "1.0", True),
            ("Shop", "Dev", "1.0", True),
            ("Shop", "Dev", "1.1", True),
            ("Blog", "Dev", "1.1", True),
        ],
        1,
        None,
        [0, 2, 3],
    ),
]


def _setup(tmp_path: Path, history: History) -> tuple[Journal, list[Entry], Path, Path]:
    apps, cache = tmp_path / "apps", tmp_path / "cache"
    cache.mkdir()
    (cache / "index.json").write_text("{}")
    entries = []
    for number, (project, environment, release, success) in enumerate(history):
        folder = apps / environment / project / f"{release}_{number}"
        folder.mkdir(parents=True)
        (folder / "app.txt").write_text(release)
        sha256 = f"{number:064x}"
        (cache / sha256).write_text("package")
        entries.append(
            Entry(
                project,
                f"id-{project}",
                environment,
                project,
                release,
                sha256,
                release,
                f"dep_{number}",
                str(folder),
                str(folder),
                f"t{number}",
                success,
            )
        )
    journal = Journal(str(tmp_path / "journal.json"), Captured().writer)
    with journal.locked() as stored:
        stored.extend(entries)
    return journal, entries, apps, cache


@pytest.mark.parametrize(
    ("history", "keep", "environment", "kept"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_policy(
    tmp_path: Path, history: History, keep: int, environment: str | None, kept: list[int]
) -> None:
    journal, entries, apps, cache = _setup(tmp_path, history)
    project = "Shop"
    captured = Captured()
    cleanup = retention.apply(
        journal, str(apps), str(cache), project, keep, captured.writer, environment=environment
    )
    assert journal.read() == [entries[i] for i in kept]
    for index, entry in enumerate(entries):
        assert Path(entry.extracted_to).exists() is (index in kept), entry
        assert (cache / entry.sha256).exists() is (index in kept), entry
    removed = len(entries) - len(kept)
    assert cleanup.removed == removed and len(cleanup.folders) == removed
    assert (cache / "index.json").read_text() == "{}"
    assert f"removed {removed}, deleted {removed} folder(s)" in captured.logs("info")[-1]


def test_shared_packages_and_folders_outside_are_kept(tmp_path: Path) -> None:
    history = [
        ("Shop", "Dev", "1.0", True),
        ("Shop", "Dev", "1.1", True),
        ("Shop", "Dev", "1.2", True),
    ]
    journal, entries, apps, cache = _setup(tmp_path, history)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with journal.locked() as stored:
        # 1.0 shares 1.2's package; 1.1 was (somehow) extracted outside the applications dir
        stored[0] = Entry(**{**stored[0].__dict__, "sha256": entries[2].sha256})
        stored[1] = Entry(**{**stored[1].__dict__, "extracted_to": str(elsewhere)})
    retention.apply(journal, str(apps), str(cache), "id-Shop", 1, Captured().writer)
    assert [e.release for e in journal.read()] == ["1.2"]
    assert elsewhere.is_dir()
    assert not Path(entries[0].extracted_to).exists()
    assert (cache / entries[2].sha256).exists()  # still used by the kept release
    assert not (cache / entries[1].sha256).exists()
    assert (cache / entries[0].sha256).exists()  # nobody deleted it: 1.0 used 1.2's


def test_emptied_package_folders_go_and_the_journal_stays_valid(tmp_path: Path) -> None:
    history = [
        ("Shop", "Dev", "1.0", True),
        ("Shop", "Test", "1.0", True),
        ("Shop", "Test", "1.1", True),
    ]
    journal, entries, apps, cache = _setup(tmp_path, history)
    old_package = apps / "Test" / "OldName" / "1.0"
    old_package.parent.mkdir()
    Path(entries[1].extracted_to).rename(old_package)
    with journal.locked() as stored:
        stored[1] = Entry(**{**stored[1].__dict__, "extracted_to": str(old_package)})
    retention.apply(
        journal, str(apps), str(cache), "Shop", 1, Captured().writer, environment="Test"
    )
    assert sorted(p.name for p in apps.iterdir()) == ["Dev", "Test"]
    assert [p.name for p in (apps / "Test").iterdir()] == ["Shop"]  # OldName/ is gone
    document = json.loads((tmp_path / "journal.json").read_text())
    assert [e["release"] for e in document["entries"]] == ["1.0", "1.1"]
