"""File patterns: which files of a real folder each pattern selects, and which are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from octo_runner.conventions import globs
from octo_runner.errors import BadInputError

FILES = [
    "a.txt",
    ".hidden.txt",
    "web.config",
    "config/app.conf",
    "config/db.conf",
    "config/nested/deep.conf",
    "docs/readme.txt",
    "docs/x/y/z.txt",
    "bin/run1.sh",
    "bin/run2.sh",
    "bin/runA.sh",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in FILES:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    os.symlink("a.txt", tmp_path / "link.txt")  # links are never matched
    (tmp_path / "outside").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("patterns", "expected", "unmatched"),
    [
        (["*.txt"], [".hidden.txt", "a.txt"], []),
        (["**/*.txt"], [".hidden.txt", "a.txt", "docs/readme.txt", "docs/x/y/z.txt"], []),
        (["config/*.conf"], ["config/app.conf", "config/db.conf"], []),
        (["config/**"], ["config/app.conf", "config/db.conf", "config/nested/deep.conf"], []),
        (
            ["config/**/*.conf"],
            ["config/app.conf", "config/db.conf", "config/nested/deep.conf"],
            [],
        ),
        (["docs/**/z.txt"], ["docs/x/y/z.txt"], []),
        (["bin/run[0-9].sh"], ["bin/run1.sh", "bin/run2.sh"], []),
        (["bin/run[!0-9].sh"], ["bin/runA.sh"], []),
        (["bin/run?.sh"], ["bin/run1.sh", "bin/run2.sh", "bin/runA.sh"], []),
        (["config\\app.conf"], ["config/app.conf"], []),
        (["./web.config", "web.config"], ["web.config"], []),
        (["*.json", "web.config"], ["web.config"], ["*.json"]),
        (["WEB.CONFIG"], [], ["WEB.CONFIG"]),
        (["link.txt"], [], ["link.txt"]),
        ([], [], []),
    ],
)
def test_match(root: Path, patterns: list[str], expected: list[str], unmatched: list[str]) -> None:
    assert globs.match(str(root), patterns, "substitute_files") == (expected, unmatched)


@pytest.mark.parametrize(
    "pattern", ["../x.conf", "/etc/*.conf", "a/../../b", "C:/x", "", "  ", "."]
)
def test_patterns_that_leave_the_folder_are_refused(pattern: str) -> None:
    with pytest.raises(BadInputError) as caught:
        globs.validate([pattern], "substitute_files")
    assert "substitute_files" in caught.value.message
