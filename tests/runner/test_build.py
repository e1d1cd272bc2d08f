"""The zipapp build, and the runner's standing rules (stdlib only, Python 3.9 syntax)."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .support import BUILD_SCRIPT, ROOT, old_python

PACKAGE = ROOT / "runner" / "octo_runner"


def test_build_is_reproducible_and_clean(runner_pyz: Path, tmp_path: Path) -> None:
    again = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(tmp_path), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    built = json.loads(again.stdout)
    data = runner_pyz.read_bytes()
    assert Path(built["path"]).read_bytes() == data
    assert built["sha256"] == hashlib.sha256(data).hexdigest()
    assert built["size"] == len(data)
    checksum = Path(built["checksum_file"]).read_text()
    assert checksum == f"{built['sha256']}  octo-runner-0.1.0.pyz\n"
    assert data.startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(runner_pyz) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    assert names[0] == "__main__.py"
    assert names == ["__main__.py", *sorted(names[1:])]
    assert "octo_runner/helpers/posix.sh" in names
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]


def test_build_prints_path_size_and_sha256(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == f"path:   {tmp_path / 'octo-runner-0.1.0.pyz'}"
    assert lines[1].startswith("size:   ") and lines[1].endswith(" bytes")
    assert len(lines[2].split()[-1]) == 64


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_runner_imports_only_the_standard_library(path: Path) -> None:
    outside = _imports(path) - set(sys.stdlib_module_names) - {"__future__"}
    assert outside == set(), f"{path} imports {outside}"


@pytest.mark.skipif(old_python() is None, reason="no Python 3.9/3.10 on this machine")
def test_runner_compiles_on_the_oldest_supported_python(tmp_path: Path) -> None:
    python = old_python()
    assert python is not None
    for path in sorted(PACKAGE.rglob("*.py")):
        target = tmp_path / (path.name + "c")
        subprocess.run(
            [
                python,
                "-c",
                "import py_compile, sys; "
                "py_compile.compile(sys.argv[1], sys.argv[2], doraise=True)",
                str(path),
                str(target),
            ],
            check=True,
        )
