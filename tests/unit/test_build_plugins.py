"""build/build_plugins.py: reproducible wheels that pip itself accepts, and clear refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin_wheels import FIXTURES, GREETING, builder, fixture_wheel


def test_the_same_sources_give_the_same_wheel(tmp_path: Path) -> None:
    first = fixture_wheel(GREETING, tmp_path / "a").read_bytes()
    assert fixture_wheel(GREETING, tmp_path / "b").read_bytes() == first


def test_pip_installs_the_wheel_as_built(tmp_path: Path) -> None:
    """pip checks the wheel's layout and RECORD: the builder writes a real wheel."""
    wheel = fixture_wheel(GREETING, tmp_path / "wheels")
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    done = subprocess.run(
        [*pip, "--disable-pip-version-check", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (target / "octo_greeting" / "template.txt").is_file()
    entry_points = next(target.glob("octo_greeting-1.0.0.dist-info")) / "entry_points.txt"
    assert "greeting = octo_greeting" in entry_points.read_text()


def test_a_dynamic_version_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "octo-dynamic"
    (source / "octo_dynamic").mkdir(parents=True)
    (source / "octo_dynamic" / "__init__.py").write_text("")
    (source / "pyproject.toml").write_text(
        '[project]\nname = "octo-dynamic"\ndynamic = ["version"]\n'
    )
    with pytest.raises(builder().BuildError, match="version must be static"):
        builder().build_wheel(source, tmp_path / "out")


def test_the_command_line_prints_each_wheel_and_its_hash(tmp_path: Path) -> None:
    script = Path(builder().__file__)
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path), str(FIXTURES / GREETING)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    path, digest = done.stdout.split()
    assert Path(path).is_file() and len(digest) == 64
