"""The upgrade journey with single executables: the frozen executable of the previous version
(``3fa79b9``, schema 5) writes a deployment history; this version's executable, run as
``octo-appliance install --no-start`` on that data dir and key dir, copies itself to the
``--bin`` path, takes the automatic backup before it migrates and writes the unit; the unit's
``ExecStart`` then runs as the service account with the unit's capabilities (``setpriv``, as in
:mod:`tests.integration.test_install`), keeps the history and deploys again.

The previous executable is built from ``git archive 3fa79b9`` with that commit's own
``appliance.spec`` and cached under ``dist/`` by commit, so a rerun builds nothing.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tarfile
from contextlib import closing
from pathlib import Path

import pytest

from octo_appliance.install.unit import parse_unit
from tests import build_cache
from tests.binary.test_binary import binary  # noqa: F401 (the fixture: v2, cached by hash)
from tests.cli_support import run_octo
from tests.integration.test_builtin_worker import deploy, session, setup_world
from tests.integration.test_install import (  # noqa: F401 (place: a fixture)
    as_the_service,
    install_args,
    place,
)
from tests.integration.test_upgrade import history_kept_then_deploys, require_previous_commit
from tests.serve_process import ServeProcess

pytestmark = [
    pytest.mark.binary,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a service needs root"),
]

ROOT = Path(__file__).resolve().parents[2]
#: ``main`` just before schema version 6 (as in tests/integration/test_upgrade.py)
PREVIOUS = "3fa79b9"
PASSWORD = "frozen-upgrade-password-1"


def build_previous() -> Path:
    """The frozen executable of :data:`PREVIOUS`, built once with its own spec and kept in the
    build cache (tests/build_cache.py): that commit never changes."""
    target = build_cache.root() / f"octo-appliance-{PREVIOUS}"
    if not target.is_file():
        require_previous_commit()
    return build_cache.cached_file(target, _build_previous)


def _build_previous(destination: Path) -> None:
    work = ROOT / "build" / "work" / f"previous-{PREVIOUS}"
    shutil.rmtree(work, ignore_errors=True)
    source = work / "source"
    source.mkdir(parents=True)
    archive = work / "source.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), PREVIOUS], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(source, filter="data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(source), str(source / "runner")])
    pyinstaller = [sys.executable, "-P", "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"]
    places = ["--distpath", str(work / "dist"), "--workpath", str(work / "build")]
    # its output goes to the test's own (shown by pytest when the build fails)
    subprocess.run([*pyinstaller, *places, "appliance.spec"], cwd=source, env=env, check=True)
    shutil.copy2(work / "dist" / "octo-appliance", destination)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def previous_binary() -> Path:
    return build_previous()


def as_the_unit(unit_text: str) -> tuple[list[str], dict[str, str]]:
    """The unit's ``ExecStart`` program, run as its user with its ambient capabilities."""
    service = parse_unit(unit_text)["Service"]
    setpriv = as_the_service(pwd.getpwnam(service["User"][0]))
    key, value = service["Environment"][0].split("=", 1)
    return [*setpriv, shlex.split(service["ExecStart"][0])[0]], {key: value, "HOME": "/nonexistent"}


def test_frozen_v1_data_installed_and_upgraded_by_the_frozen_v2(
    binary: Path,  # noqa: F811
    previous_binary: Path,
    place: Path,  # noqa: F811
) -> None:
    data, key_file = place / "data", place / "etc" / "master.key"
    key_file.parent.mkdir(mode=0o700)
    v1_env = {"OCTO_MASTER_KEY_FILE": str(key_file), "OCTO_ADMIN_PASSWORD": PASSWORD}
    with (
        ServeProcess(data, command=[str(previous_binary)], env=v1_env) as old,
        closing(session(old, "admin", PASSWORD)) as admin,
    ):
        setup_world(admin)
        task, log = deploy(admin, "echo written-by-the-frozen-v1")
        assert task["state"] == "success", log

    installed = place / "bin" / "octo-appliance"
    args = install_args(place, "--bin", str(installed))
    done = run_octo(*args, command=[str(binary)], timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    backups = sorted((data / "backups").glob("before-schema-5-to-*.tar"))
    assert len(backups) == 1, done.stdout
    assert str(backups[0]) in done.stdout
    assert "sign in as admin with the password" not in done.stdout  # nothing initialised anew
    assert installed.read_bytes() == binary.read_bytes()

    command, env = as_the_unit((place / "units" / "octo-appliance.service").read_text())
    assert command[-1] == str(installed)
    env["OCTO_WORKER_DIR"] = str(place / "data-worker")
    # the account has no home: its launcher unpacks into /tmp/octo-appliance-<uid>
    cache = Path(f"/tmp/octo-appliance-{pwd.getpwnam((place / 'account').read_text()).pw_uid}")
    try:
        serve_installed(data, command, env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def serve_installed(data: Path, command: list[str], env: dict[str, str]) -> None:
    with (
        ServeProcess(data, command=command, env=env) as new,
        closing(session(new, "admin", PASSWORD)) as admin,
    ):
        assert "schema upgraded" not in new.output()  # the install migrated it
        history_kept_then_deploys(admin, "written-by-the-frozen-v1")
