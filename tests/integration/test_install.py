"""``octo-appliance install``: a fresh data dir and key dir made into a service, run as the
service account the way its unit runs it, rerun as a no-op, and removed.

systemd does not run this machine (no ``/run/systemd/system``), as on many containers: the
unit is written and checked (``systemd-analyze verify`` when present, else parsed) and the
test starts the ``ExecStart`` command itself as the unit would, as the service account with
the unit's ambient capabilities, so what is checked is what the unit would run. The built-in
worker then runs its script as ``octo-worker`` with no capability left.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

import octo_appliance
from octo_appliance.install.unit import CAPABILITIES, parse_unit, unit_problems
from tests.cli_support import run_octo
from tests.integration.test_builtin_worker import deploy, session, setup_world
from tests.serve_process import ServeProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a service needs root"),
]

PASSWORD = re.compile(r"^sign in as admin with the password (\S+)$", re.M)


def octo(*args: str) -> subprocess.CompletedProcess[str]:
    return run_octo(*args, timeout=300)


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory the service account can traverse (pytest's tmp dirs are root's 0700)."""
    root = Path(tempfile.mkdtemp(prefix="octo-install-"))
    os.chmod(root, 0o755)
    account = f"octo-t{secrets.token_hex(3)}"
    (root / "account").write_text(account)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["userdel", account], capture_output=True, check=False)


def install_args(place: Path, *extra: str) -> list[str]:
    account = (place / "account").read_text()
    return [
        "install",
        *("--data-dir", str(place / "data"), "--key-dir", str(place / "etc")),
        *("--user", account, "--systemd-dir", str(place / "units"), "--no-start"),
        *extra,
    ]


def system_python() -> str:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the service account")
    done = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    )
    if done.stdout.strip() != str(sys.version_info[:2]):
        pytest.skip("the system python3 is not this version")
    return python


def as_the_service(service: pwd.struct_passwd) -> list[str]:
    """The ``setpriv`` prefix that runs a command as the unit would: the service account with
    the unit's ambient capabilities."""
    caps = ",".join("+" + c.removeprefix("CAP_").lower() for c in CAPABILITIES.split())
    return [
        "setpriv",
        f"--reuid={service.pw_uid}",
        f"--regid={service.pw_gid}",
        "--clear-groups",
        f"--inh-caps={caps}",
        f"--ambient-caps={caps}",
        "--",
    ]


def test_install_rerun_run_as_the_unit_and_remove(place: Path) -> None:
    first = octo(*install_args(place))
    assert first.returncode == 0, first.stderr
    account = (place / "account").read_text()
    service = pwd.getpwnam(account)
    password = PASSWORD.search(first.stdout)
    assert password, first.stdout
    assert f"created the system account {account}" in first.stdout
    assert "master key: " + str(place / "etc" / "master.key") in first.stdout
    assert "not started: systemd does not run this machine" in first.stdout

    unit_text = (place / "units" / "octo-appliance.service").read_text()
    assert unit_problems(unit_text) == []
    unit = parse_unit(unit_text)["Service"]
    assert unit["User"] == [account] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["AmbientCapabilities"] == [CAPABILITIES]
    assert unit["Environment"] == [f"OCTO_MASTER_KEY_FILE={place / 'etc' / 'master.key'}"]
    for path in (place / "data", place / "etc", place / "data-worker"):
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (service.pw_uid, 0o700), path
    key = place / "etc" / "master.key"
    assert key.stat().st_uid == service.pw_uid and key.stat().st_mode & 0o077 == 0

    again = octo(*install_args(place))
    assert again.returncode == 0, again.stderr
    assert "already installed: nothing to change" in again.stdout
    assert PASSWORD.search(again.stdout) is None
    assert (place / "units" / "octo-appliance.service").read_text() == unit_text

    # run what the unit runs, as the unit runs it: the service account with its capabilities
    setpriv = as_the_service(service)
    source = Path(octo_appliance.__file__).resolve().parents[1]
    python_path = [str(source), str(source / "runner"), sysconfig.get_paths()["purelib"]]
    env = {
        "OCTO_MASTER_KEY_FILE": str(key),
        "OCTO_WORKER_DIR": str(place / "data-worker"),
        "PYTHONPATH": os.pathsep.join(python_path),
        "HOME": "/nonexistent",
    }
    command = [*setpriv, system_python(), "-m", "octo_appliance"]
    with ServeProcess(place / "data", command=command, env=env) as server:
        assert server.banner.admin_password is None  # initialised by the install
        with closing(session(server, "admin", password[1])) as admin:
            setup_world(admin)
            task, log = deploy(admin, "id -un; grep -E '^Cap(Eff|Prm|Amb):' /proc/self/status")
        assert task["state"] == "success", log
        assert "octo-worker" in log
        for name in ("CapEff", "CapPrm", "CapAmb"):
            assert re.search(rf"{name}:\s+0{{16}}", log), log

    kept = octo(*install_args(place, "--uninstall"))
    assert kept.returncode == 0, kept.stderr
    assert not (place / "units" / "octo-appliance.service").exists()
    assert key.exists() and (place / "data").is_dir()

    purged = octo(*install_args(place, "--uninstall", "--purge"))
    assert purged.returncode == 0, purged.stderr
    assert not key.exists() and not (place / "data").exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(account)


def test_install_refuses_purge_without_uninstall(place: Path) -> None:
    done = octo(*install_args(place, "--purge"))
    assert done.returncode == 2
    assert "--purge deletes the data and goes with --uninstall only" in done.stderr
    assert not (place / "data").exists()
