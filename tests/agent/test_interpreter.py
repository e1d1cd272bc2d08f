"""The hidden entry that lets a frozen program (the single executable) run the runner zipapp:
a ``.pyz`` path as its first argument (issue 15, section 1). The frozen build itself is
exercised by ``tests/binary/test_binary.py``; here the same entry runs on this interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from octo_appliance.agent import interpreter
from octo_appliance.builds.runner import archive_bytes


@pytest.fixture(scope="module")
def runner_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runner") / "octo-runner-test.pyz"
    path.write_bytes(archive_bytes(bytecode=False))
    return path


@pytest.mark.parametrize("module", ["octo_appliance", "octo_appliance.agent"])
def test_a_pyz_as_first_argument_runs_that_zipapp(module: str, runner_pyz: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, str(runner_pyz), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("octo-runner "), done.stdout


def test_a_frozen_program_names_itself_as_the_runner_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert interpreter.python_command() == [sys.executable, "-I", "-S"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.delenv(interpreter.LAUNCHER_VARIABLE, raising=False)
    assert interpreter.python_command() == [sys.executable]


def test_a_frozen_program_started_by_the_launcher_names_the_launcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not its unpacked copy in the cache, which the worker's account cannot reach."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    launcher = tmp_path / "octo-appliance"
    launcher.write_bytes(b"")
    monkeypatch.setenv(interpreter.LAUNCHER_VARIABLE, str(launcher))
    assert interpreter.python_command() == [str(launcher)]
    monkeypatch.setenv(interpreter.LAUNCHER_VARIABLE, str(tmp_path / "gone"))
    assert interpreter.python_command() == [sys.executable]
    monkeypatch.setenv(interpreter.LAUNCHER_VARIABLE, "octo-appliance")  # relative: ignored
    assert interpreter.python_command() == [sys.executable]


def test_the_runner_of_a_frozen_program_gets_the_environment_before_the_bootloader() -> None:
    environ = {
        "PATH": "/usr/bin",
        "LD_LIBRARY_PATH": "/tmp/_MEI1234:/opt/lib",
        "LD_LIBRARY_PATH_ORIG": "/opt/lib",
        "_PYI_ARCHIVE_FILE": "/usr/local/bin/octo-appliance",
        "_PYI_APPLICATION_HOME_DIR": "/tmp/_MEI1234",
        "_MEIPASS2": "/tmp/_MEI1234",
        "OCTO_EXECUTABLE": "/usr/local/bin/octo-appliance",
    }
    interpreter.restore_environment(environ)
    assert environ == {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"}

    unset = {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/tmp/_MEI1234"}
    interpreter.restore_environment(unset)
    assert unset == {"PATH": "/usr/bin"}
