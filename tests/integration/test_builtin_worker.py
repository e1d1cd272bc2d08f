"""The built-in worker on a real ``octo-appliance serve`` process (issue 10, item 1).

- The reproduction: a user whose only grant is project-deployer on one project and one
  environment edits the process to a ``run_on: appliance`` step: 403 naming ``worker.use``.
- As root, an administrator's appliance step runs as the ``octo-worker`` account, with an
  allow-listed environment, and cannot read the master key, the database, the data dir or
  ``/proc/<appliance>/environ`` (the admin password given by environment is a canary).
- As a plain user (``nobody``, through ``setpriv``), the worker cannot switch user: it is
  disabled, said at start and in the failing step.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import octo_appliance
from octo_appliance.db.connection import SQLITE_FILE_NAME
from tests.fleet import wait_until
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.slow

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
FINAL = {"success", "failed", "canceled", "timed_out"}


def session(server: ServeProcess, username: str, password: str) -> httpx.Client:
    """A cookie session of ``username``, sending its CSRF token on writes."""
    client = server.http2_client(timeout=30.0)
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def step(body: str) -> dict[str, Any]:
    return {
        "name": "Takeover",
        "type": "run-script",
        "properties": {"syntax": "bash", "body": body, "run_on": "appliance"},
    }


def setup_world(admin: httpx.Client) -> None:
    ok(admin.post("/api/v1/environments", json={"name": "Dev"}), 201)
    phases = [{"name": "Dev", "environments": ["Dev"]}]
    ok(admin.post("/api/v1/lifecycles", json={"name": "Main", "phases": phases}), 201)
    ok(admin.post("/api/v1/projects", json={"name": "Shop", "lifecycle": "Main"}), 201)


def deploy(admin: httpx.Client, body: str) -> tuple[dict[str, Any], str]:
    """Save the step, release and deploy it as the administrator; the task and its log."""
    ok(admin.put("/api/v1/projects/Shop/process", json={"steps": [step(body)]}))
    release = ok(admin.post("/api/v1/projects/Shop/releases", json={}), 201)
    deployment = ok(
        admin.post("/api/v1/deployments", json={"release": release["id"], "environment": "Dev"}),
        201,
    )
    task_id = deployment["task_id"]
    task = wait_until(
        lambda: (t := ok(admin.get(f"/api/v1/tasks/{task_id}")))["state"] in FINAL and t,
        180,
        "the deployment to finish",
        every=0.2,
    )
    lines = ok(admin.get(f"/api/v1/tasks/{task_id}/log"))["items"]
    return task, "\n".join(line["message"] for line in lines)


@pytest.fixture
def canary() -> str:
    return f"canary-{secrets.token_hex(12)}"


@ROOT_ONLY
def test_scoped_deployer_is_refused_and_the_worker_cannot_reach_secrets(
    tmp_path: Path, canary: str
) -> None:
    data_dir = tmp_path / "data"
    with ServeProcess(data_dir, env={"OCTO_ADMIN_PASSWORD": canary}) as server:
        admin = session(server, "admin", canary)
        setup_world(admin)
        env_id = ok(admin.get("/api/v1/environments", params={"name": "Dev"}))["items"][0]["id"]
        shop_id = ok(admin.get("/api/v1/projects", params={"name": "Shop"}))["items"][0]["id"]
        password = f"deployer-{secrets.token_hex(8)}"
        ok(admin.post("/api/v1/users", json={"username": "dora", "password": password}), 201)
        grant = {"role": "project-deployer", "environments": [env_id], "projects": [shop_id]}
        team = {"name": "Shop deployers", "members": ["dora"], "roles": [grant]}
        ok(admin.post("/api/v1/teams", json=team), 201)

        # the reproduction: the deployer's edit is refused, naming the permission
        dora = session(server, "dora", password)
        attack = step("id; base64 -w0 < $DATA/master.key; cat /proc/$PPID/environ")
        refused = dora.put("/api/v1/projects/Shop/process", json={"steps": [attack]})
        assert refused.status_code == 403, refused.text
        assert "'worker.use'" in refused.json()["error"]["message"]

        # an administrator's appliance step runs as the worker account, and fails to read
        # every secret of the appliance
        key = server.key_file
        assert key is not None and key.is_file()
        database = data_dir / SQLITE_FILE_NAME
        probe = "\n".join(
            [
                "id -un",
                'echo "HOME=$HOME"',
                "env | grep -c '^OCTO_' || true",
                f"base64 -w0 < '{key}' && echo KEY-READ || echo KEY-DENIED",
                f"head -c 16 '{database}' >/dev/null && echo DB-READ || echo DB-DENIED",
                f"ls '{data_dir}' && echo DATA-LISTED || echo DATA-DENIED",
                f"cat '{data_dir}/tls.key' >/dev/null && echo TLS-READ || echo TLS-DENIED",
                f"cat /proc/{server.process.pid}/environ && echo ENV-READ || echo ENV-DENIED",
                f"head -c 1 /proc/{server.process.pid}/mem && echo MEM-READ || echo MEM-DENIED",
                "cat /proc/$PPID/environ | tr '\\0' '\\n' | grep -c '^OCTO_' || true",
            ]
        )
        task, log = deploy(admin, probe)
        assert task["state"] == "success", (task["error"], log)
        for line in ("KEY-DENIED", "DB-DENIED", "DATA-DENIED", "TLS-DENIED", "ENV-DENIED"):
            assert line in log, log
        assert "MEM-DENIED" in log, log
        for line in ("KEY-READ", "DB-READ", "DATA-LISTED", "TLS-READ", "ENV-READ", "MEM-READ"):
            assert line not in log, log
        lines = log.splitlines()
        assert "octo-worker" in lines, log
        assert "root" not in lines and "uid=0" not in log, log
        home = server.worker_dir / "home"
        assert f"HOME={home}" in lines, log
        assert canary not in log, "the admin password given by environment reached the worker"
        stat = home.stat()
        assert (stat.st_uid, stat.st_mode & 0o777) == (pwd.getpwnam("octo-worker").pw_uid, 0o700)
        assert data_dir.stat().st_mode & 0o777 == 0o700
        assert key.stat().st_mode & 0o077 == 0


@pytest.fixture
def plain_dirs() -> Iterator[Path]:
    """A directory ``nobody`` owns (pytest's tmp dirs are root's and 0700)."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody here")
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv here")
    root = Path(tempfile.mkdtemp(prefix="octo-plain-"))
    os.chown(root, nobody.pw_uid, nobody.pw_gid)
    # the data dir is nobody's before the test writes its config.toml (the key file's place)
    (root / "data").mkdir()
    os.chown(root / "data", nobody.pw_uid, nobody.pw_gid)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _same_minor(python: str) -> bool:
    done = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    )
    return done.stdout.strip() == str(sys.version_info[:2])


@ROOT_ONLY
def test_as_a_plain_user_the_worker_is_disabled_with_the_reason(
    plain_dirs: Path, canary: str
) -> None:
    # the venv's interpreter may live where nobody cannot reach (a pyenv under /root): run
    # the system's python3 of the same version on this checkout and the venv's packages
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None or not _same_minor(python):
        pytest.skip("no system python3 of this version for an unprivileged user")
    source = Path(octo_appliance.__file__).resolve().parents[1]
    path = [str(source), str(source / "runner"), sysconfig.get_paths()["purelib"]]
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--init-groups", "--"]
    command += [python, "-m", "octo_appliance"]
    env = {
        "OCTO_ADMIN_PASSWORD": canary,
        "HOME": str(plain_dirs / "home"),
        "OCTO_WORKER_DIR": str(plain_dirs / "worker"),
        "PYTHONPATH": os.pathsep.join(path),
    }
    with ServeProcess(plain_dirs / "data", command=command, env=env) as server:
        admin = session(server, "admin", canary)
        setup_world(admin)
        task, log = deploy(admin, "id -un; echo should-not-run")
        assert task["state"] == "failed", log
        failure = task["error"] + "\n" + log
        assert "the built-in worker is disabled" in failure, failure
        assert "runs as 'nobody', not root" in failure, failure
        assert "should-not-run" not in log
        assert "the built-in worker is disabled" in server.output()
        # PR_SET_DUMPABLE 0: even a process of the appliance's own user cannot read its
        # environment (the admin password given by environment) or its memory
        assert server.process is not None
        for name in ("environ", "mem"):
            peek = subprocess.run(
                [*command[:5], "head", "-c", "4096", f"/proc/{server.process.pid}/{name}"],
                capture_output=True,
            )
            assert peek.returncode != 0 and canary.encode() not in peek.stdout, name
