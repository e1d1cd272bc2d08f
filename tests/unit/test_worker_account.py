"""The built-in worker's account: its environment allow-list, which account it runs as, and
what it must not reach (``octo_appliance/transports/worker_account.py``)."""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from octo_appliance.exceptions import ConfigError
from octo_appliance.plugin_api.transport_context import TransportContext
from octo_appliance.transports import worker_account
from octo_appliance.transports.base import RunnerCommand
from octo_appliance.transports.local import WORKER, LocalTransport
from octo_appliance.transports.worker_account import (
    SYSTEM_PATH,
    WorkerUnavailable,
    WorkerUser,
    blocking_dir,
    check_account,
    exposure,
    resolve_account,
    worker_environment,
)

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def nobody() -> WorkerUser:
    try:
        return WorkerUser.lookup("nobody")
    except ConfigError:
        pytest.skip("no user nobody here")


# -- the environment --------------------------------------------------------------------------


def test_environment_is_an_allow_list(monkeypatch: pytest.MonkeyPatch, nobody: WorkerUser) -> None:
    for name, value in {
        "OCTO_MASTER_KEY": "key",
        "OCTO_ADMIN_PASSWORD": "pw",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "PYTHONPATH": "/somewhere",
        "LD_PRELOAD": "/evil.so",
        "PATH": "/opt/appliance/venv/bin:/usr/bin",
        "HOME": "/root",
        "LANG": "de_DE.UTF-8",
        "TZ": "Europe/Berlin",
    }.items():
        monkeypatch.setenv(name, value)
    env = worker_environment(nobody, Path("/srv/worker/home"))
    assert env == {
        "PATH": SYSTEM_PATH,
        "HOME": "/srv/worker/home",
        "USER": "nobody",
        "LOGNAME": "nobody",
        "LANG": "de_DE.UTF-8",
        "TZ": "Europe/Berlin",
    }


def test_environment_without_lang_or_tz(
    monkeypatch: pytest.MonkeyPatch, nobody: WorkerUser
) -> None:
    monkeypatch.delenv("LANG", raising=False)
    monkeypatch.delenv("TZ", raising=False)
    monkeypatch.setenv("OCTO_DATABASE", "postgresql://u:secret@db/octo")
    env = worker_environment(nobody, None)
    assert set(env) == {"PATH", "HOME", "USER", "LOGNAME"}
    assert env["HOME"] == nobody.home
    assert "secret" not in repr(env)


# -- which account --------------------------------------------------------------------------


@ROOT_ONLY
def test_as_root_the_default_account_is_octo_worker() -> None:
    user = resolve_account(None)
    assert user.name == "octo-worker"
    assert user.uid != 0 and user.gid != 0
    assert pwd.getpwnam("octo-worker").pw_shell in (
        "/usr/sbin/nologin",
        "/sbin/nologin",
        "/bin/false",
    )


@ROOT_ONLY
def test_as_root_worker_user_may_not_be_root() -> None:
    with pytest.raises(WorkerUnavailable, match="never runs as root"):
        resolve_account("root")
    with pytest.raises(ConfigError, match="is not a user on this machine"):
        resolve_account(f"no-such-user-{secrets.token_hex(3)}")


def test_a_plain_user_without_worker_user_is_disabled(
    monkeypatch: pytest.MonkeyPatch, nobody: WorkerUser
) -> None:
    """What the appliance decides when it runs as ``nobody`` (the real process: see
    tests/integration/test_builtin_worker.py)."""
    monkeypatch.setattr(worker_account.os, "geteuid", lambda: nobody.uid)
    with pytest.raises(WorkerUnavailable, match="runs as 'nobody', not root"):
        resolve_account(None)
    with pytest.raises(WorkerUnavailable, match="runs as 'nobody', not root"):
        resolve_account("nobody")


# -- what it reaches ------------------------------------------------------------------------


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may pass through (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="octo-account-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@ROOT_ONLY
def test_reachability_and_exposure(open_dir: Path, nobody: WorkerUser) -> None:
    private = open_dir / "data"
    private.mkdir(mode=0o700)
    key = open_dir / "master.key"
    key.write_text("k")
    key.chmod(0o600)
    leaky = open_dir / "leaky.key"
    leaky.write_text("k")
    leaky.chmod(0o644)
    inside = private / "readable-but-hidden"
    inside.write_text("x")
    inside.chmod(0o644)

    assert blocking_dir(open_dir / "worker" / "new", nobody) is None
    assert blocking_dir(private / "worker", nobody) == private
    assert exposure([private, key, inside], nobody) == []
    assert exposure([leaky, key], nobody) == [leaky]
    with pytest.raises(WorkerUnavailable, match="could read the master key"):
        check_account(nobody, open_dir / "worker", {"master key": leaky})
    with pytest.raises(WorkerUnavailable, match="cannot reach the worker dir"):
        check_account(nobody, private / "worker", {"data dir": private})
    taken = open_dir / "taken"
    taken.mkdir()
    os.chown(taken, nobody.uid, nobody.gid)
    with pytest.raises(WorkerUnavailable, match="not a directory of the appliance's own user"):
        check_account(nobody, taken, {})
    (open_dir / "link").symlink_to(open_dir)
    with pytest.raises(WorkerUnavailable, match="not a directory of the appliance's own user"):
        check_account(nobody, open_dir / "link", {})
    check_account(nobody, open_dir / "worker", {"data dir": private, "master key": key})


@ROOT_ONLY
def test_a_worker_that_cannot_reach_its_dir_is_disabled_with_the_reason(tmp_path: Path) -> None:
    """pytest's tmp dir is root's and 0700: as root the worker (octo-worker) cannot use it."""
    local = LocalTransport(TransportContext("local", SimpleNamespace()))  # type: ignore[arg-type]
    local.configure(enabled=True, root=tmp_path / "worker", user=None)
    assert not local.enabled and local.user is None
    command = RunnerCommand(task_id="task_x", command="run-script", arguments={})
    events: list[dict[str, Any]] = []
    result = asyncio.run(local.run_runner(WORKER, command, events.append))
    assert not result.success
    assert "the built-in worker is disabled" in result.message
    assert "cannot reach the worker dir" in result.message
