"""The deployment journal: real files, real concurrent writers."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from octo_runner.conventions.journal import Entry, Journal, installed

from .conventions_support import Captured
from .support import ROOT


def entry(tmp_path: Path, **changes: object) -> Entry:
    folder = tmp_path / "apps" / "Dev" / "App" / "1.0.0"
    folder.mkdir(parents=True, exist_ok=True)
    base = Entry(
        project="Shop",
        project_id="prj_1",
        environment="Dev",
        package_id="App",
        version="1.0.0",
        sha256="a" * 64,
        release="1.0",
        deployment_id="dep_1",
        extracted_to=str(folder),
        installed_to=str(folder),
        installed_at="2026-01-01T00:00:00.000Z",
        success=True,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_append_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.json"
    journal = Journal(str(path), Captured().writer)
    assert journal.read() == []
    first, second = entry(tmp_path), entry(tmp_path, release="1.1", success=False)
    journal.append(first)
    journal.append(second)
    assert journal.read() == [first, second]
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert document["entries"][1]["release"] == "1.1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["journal.json", "journal.json.lock"]


@pytest.mark.parametrize(
    "content", [b"not json", b"[]", b'{"entries": 5}', b"\xff\xfe", b'{"version": 1}']
)
def test_a_corrupt_journal_is_a_warning_and_kept_aside(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "journal.json"
    path.write_bytes(content)
    captured = Captured()
    journal = Journal(str(path), captured.writer)
    assert journal.read() == []
    assert any("is unreadable" in w for w in captured.logs("warning"))
    journal.append(entry(tmp_path))
    assert (tmp_path / "journal.json.corrupt").read_bytes() == content
    assert len(Journal(str(path), captured.writer).read()) == 1


def test_malformed_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    good = entry(tmp_path)
    raw = json.loads(json.dumps({"entries": [good.__dict__]}))
    raw["entries"] += [{"project": 5}, "text", {**raw["entries"][0], "success": "yes"}]
    path.write_text(json.dumps(raw))
    captured = Captured()
    assert Journal(str(path), captured.writer).read() == [good]
    assert any("ignored 3 malformed" in w for w in captured.logs("warning"))


@pytest.mark.parametrize(
    ("changes", "found"),
    [
        ({}, True),
        ({"project": "SHOP", "environment": "dev", "package_id": "app"}, True),
        ({"project": "Renamed"}, True),  # same project id
        ({"project_id": "prj_2"}, False),
        ({"environment": "Prod"}, False),
        ({"package_id": "Other"}, False),
        ({"version": "1.0.1"}, False),
        ({"release": "1.1"}, False),
    ],
)
def test_installed_matches_project_environment_package_version_release(
    tmp_path: Path, changes: dict[str, str], found: bool
) -> None:
    recorded = entry(tmp_path)
    wanted = replace(recorded, **changes)  # type: ignore[arg-type]
    assert (installed([recorded], wanted) == recorded) is found


def test_installed_ignores_failures_and_vanished_folders(tmp_path: Path) -> None:
    failed = entry(tmp_path, success=False)
    assert installed([failed], failed) is None
    gone = entry(tmp_path, extracted_to=str(tmp_path / "gone"), installed_to="")
    assert installed([gone], gone) is None
    older = entry(tmp_path)
    assert installed([older, gone, failed], older) == older


WRITER = """
import sys
sys.path.insert(0, sys.argv[3])
from octo_runner.conventions.journal import Entry, Journal
from octo_runner.masking import Masker
from octo_runner.protocol import EventWriter
journal = Journal(sys.argv[1], EventWriter(sys.stdout.buffer, Masker()))
for number in range(20):
    journal.append(Entry("P", "", "Dev", "App", "1", "a" * 64, f"{sys.argv[2]}-{number}",
                         "", "/x", "", "now", True))
"""


def test_concurrent_writers_lose_no_entry(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(n), str(ROOT / "runner")],
            stdout=subprocess.DEVNULL,
        )
        for n in range(6)
    ]
    assert [w.wait(timeout=60) for w in writers] == [0] * 6
    releases = {e.release for e in Journal(str(path), Captured().writer).read()}
    assert releases == {f"{n}-{i}" for n in range(6) for i in range(20)}
