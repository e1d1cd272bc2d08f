"""A real upgrade: a data dir with a deployment history, written by the previous version of
the code (``main`` just before schema 6), opened by this one.

The new version takes the automatic backup before it migrates (the format of ``octo-appliance
backup``), keeps the history, deploys again; and the backup is what makes the upgrade
reversible: the previous version restores it into a new data dir and serves the same history.
The previous version is the repository's own history (``git archive``), run from source with
this interpreter and this venv's libraries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.integration.test_builtin_worker import deploy, ok, session, setup_world
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: ``main`` just before the merge that added schema version 6 (scheduled tasks)
PREVIOUS = "3fa79b9"
PASSWORD = "upgrade-test-password-1"


def require_previous_commit() -> None:
    """The previous version comes from this repository's history: a checkout without it (a
    shallow clone, an exported tree) cannot run the upgrade, and says so as a skip."""
    known = shutil.which("git") is not None and (ROOT / ".git").exists()
    known = known and (
        subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not known:
        pytest.skip(f"commit {PREVIOUS} is not in this checkout: fetch the full history")


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous version's source tree."""
    require_previous_commit()
    target = tmp_path_factory.mktemp("previous")
    archive = target / "source.tar"
    subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "archive",
            "-o",
            str(archive),
            PREVIOUS,
            "octo_appliance",
            "runner",
        ],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


#: ``-P``: the checkout the tests run from (the current directory) must not come first on
#: ``sys.path``, PYTHONPATH's previous version must
PREVIOUS_COMMAND = [sys.executable, "-P", "-m", "octo_appliance"]


def previous_env(source: Path) -> dict[str, str]:
    path = os.pathsep.join([str(source), str(source / "runner")])
    return {"PYTHONPATH": path, "OCTO_ADMIN_PASSWORD": PASSWORD}


def previous_python(source: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
    env.update(previous_env(source))
    return subprocess.run(
        [sys.executable, "-P", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def history_kept_then_deploys(admin: httpx.Client, written_before: str) -> None:
    """The upgraded appliance shows the one deployment made before (its log too) and deploys."""
    history = ok(admin.get("/api/v1/deployments"))["items"]
    assert [d["state"] for d in history] == ["success"]
    log = ok(admin.get(f"/api/v1/tasks/{history[0]['task_id']}/log"))["items"]
    assert written_before in "\n".join(x["message"] for x in log)
    task, text = deploy(admin, "echo written-by-this-version")
    assert task["state"] == "success", text
    assert "written-by-this-version" in text


def test_upgrade_backs_up_keeps_history_and_the_backup_restores_on_the_previous_version(
    tmp_path: Path, previous: Path
) -> None:
    data = tmp_path / "data"
    probe = "from octo_appliance.db.migrations import latest_version; print(latest_version())"
    assert previous_python(previous, "-c", probe).stdout.strip() == "5"  # it is the previous
    old = ServeProcess(data, command=PREVIOUS_COMMAND, env=previous_env(previous))
    with old as running, closing(session(running, "admin", PASSWORD)) as admin:
        setup_world(admin)
        task, log = deploy(admin, "echo written-by-the-previous-version")
        assert task["state"] == "success", log

    with ServeProcess(data) as new:
        output = new.output()
        assert "schema upgraded to version" in output, output
        backups = sorted((data / "backups").glob("before-schema-5-to-*.tar"))
        assert len(backups) == 1, output
        assert str(backups[0]) in output
        with closing(session(new, "admin", PASSWORD)) as admin:
            history_kept_then_deploys(admin, "written-by-the-previous-version")

    # a second start migrates nothing and takes no backup
    with ServeProcess(data) as again:
        assert "schema upgraded" not in again.output()
    assert len(list((data / "backups").glob("*.tar"))) == 1

    # back to the previous version: its own restore reads the backup, its server serves it
    restored = tmp_path / "restored"
    key = data.parent / "data-key" / "master.key"
    (tmp_path / "restored-key").mkdir()
    shutil.copy2(key, tmp_path / "restored-key" / "master.key")
    env_key = {"OCTO_MASTER_KEY_FILE": str(tmp_path / "restored-key" / "master.key")}
    done = subprocess.run(
        [*PREVIOUS_COMMAND, "restore", "--input", str(backups[0]), "--data-dir", str(restored)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}}
        | previous_env(previous)
        | env_key,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with (
        ServeProcess(
            restored, command=PREVIOUS_COMMAND, env=previous_env(previous) | env_key
        ) as old,
        closing(session(old, "admin", PASSWORD)) as admin,
    ):
        history = ok(admin.get("/api/v1/deployments"))["items"]
        assert [d["state"] for d in history] == ["success"]
