"""The zipapp build, and the runner's standing rules (stdlib only, Python 3.9 syntax)."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import marshal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .support import (
    BUILD_SCRIPT,
    ROOT,
    build_runner,
    make_request,
    old_python,
    parse_events,
    plain_python,
)

PACKAGE = ROOT / "runner" / "octo_runner"


def test_build_is_reproducible_and_clean(runner_pyz: Path, tmp_path: Path) -> None:
    built = build_runner(tmp_path)
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
    assert not [n for n in names if "__pycache__" in n]
    assert not [n for n in names if n.endswith(".pyc") and n[:-1] not in names]


def test_build_is_the_same_whatever_the_building_process_imported(runner_pyz: Path) -> None:
    """The appliance builds the archive in its own process, which has imported much of the
    stdlib and itself (marshal's output depends on that): still the build script's bytes."""
    import octo_appliance.web.app  # noqa: F401  (what the appliance's process holds)
    from octo_appliance.builds.runner import archive_bytes

    assert archive_bytes() == runner_pyz.read_bytes()


def test_imported_modules_ship_unchecked_hash_bytecode(runner_pyz: Path) -> None:
    with zipfile.ZipFile(runner_pyz) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    sources = [n for n in members if n.endswith(".py")]
    data_files = {"octo_runner/helpers/bootstrap.py", "octo_runner/helpers/octo.py"}
    assert data_files <= set(sources)
    for name in sources:
        pyc = members.get(name + "c")
        if name in data_files:  # written beside a script, never imported from the archive
            assert pyc is None, name
            continue
        assert pyc is not None, f"{name} has no bytecode"
        assert pyc[:4] == importlib.util.MAGIC_NUMBER
        assert int.from_bytes(pyc[4:8], "little") == 0b01, "not unchecked hash-based"
        assert pyc[8:16] == importlib.util.source_hash(members[name])
        assert isinstance(marshal.loads(pyc[16:]), type(compile("", "", "exec")))


def _module_files(pyz: Path, python: str) -> list[str]:
    done = subprocess.run(
        [
            python,
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import octo_runner.__main__, octo_runner.commands.run_script as m; "
            "print(octo_runner.__main__.__file__); print(m.__file__)",
            str(pyz),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.split()


def test_the_runner_loads_its_modules_from_the_bytecode(runner_pyz: Path) -> None:
    files = _module_files(runner_pyz, plain_python())
    assert [Path(f).name for f in files] == ["__main__.pyc", "run_script.pyc"]


def test_bytecode_of_another_python_is_ignored_for_the_source(
    runner_pyz: Path, tmp_path: Path
) -> None:
    """A target whose Python has another bytecode version (3.9 for a 3.11 build) gets the
    magic-number mismatch, and zipimport compiles the source instead."""
    other = tmp_path / "other-python.pyz"
    with zipfile.ZipFile(runner_pyz) as source, zipfile.ZipFile(other, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".pyc"):
                data = b"\x61\x0d\x0d\x0a" + data[4:]  # 3.9's magic number
            target.writestr(info, data)

    assert [Path(f).name for f in _module_files(other, plain_python())] == [
        "__main__.py",
        "run_script.py",
    ]
    done = subprocess.run(
        [plain_python(), "-I", "-S", str(other)],
        input=json.dumps(
            make_request(
                "run-script",
                arguments={"syntax": "bash", "body": "echo from source"},
                work_dir=tmp_path / "work",
            )
        ).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    events = parse_events(done.stdout.decode())
    assert done.returncode == 0, done.stderr
    assert events[-1]["success"] is True
    assert any(e.get("message") == "from source" for e in events)


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
