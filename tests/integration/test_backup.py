"""``backup`` / ``restore`` round trip on real processes, SQLite and PostgreSQL (issue 10.2).

A running ``serve`` deploys a release that needs a sealed package and a sensitive variable on
the built-in worker; ``backup`` runs beside it; the data dir (and database) are wiped; a restore
without the key and with a wrong key fails saying what to do and writes nothing; a restore with
the key (as the text ``master-key show`` prints) brings it back and the old release deploys
again. The backup never holds the key.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from octo_appliance.testing import keep_key_beside
from octo_appliance.vault import KeyRing, MasterKey
from octo_appliance.vault.keys import read_keyring_file, write_keyring
from tests.child_process import run_module
from tests.fleet import FINAL_STATES, wait_until
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.slow

SECRET = "s3cret-" + base64.b16encode(os.urandom(4)).decode()
PAYLOAD = "payload-" + base64.b16encode(os.urandom(4)).decode()


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_module("octo_appliance", *args, **env)


def _package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.txt", PAYLOAD)
        archive.writestr("Deploy.sh", 'echo "package says $(cat payload.txt)"\n')
    return buffer.getvalue()


class Api:
    """The admin's API client of a running server (a context manager that closes it)."""

    def __init__(self, server: ServeProcess, database: str | None) -> None:
        data = _data_args(server.data_dir, database)
        created = _cli("api-key", "create", *data, "--user", "admin")
        assert created.returncode == 0, created.stderr
        self.client: httpx.Client = server.http2_client(
            headers={"X-Api-Key": created.stdout.strip().splitlines()[-1]}, timeout=60
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.client.request(method, "/api/v1" + path, **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def deploy(self, release_id: str) -> tuple[dict[str, Any], str]:
        body = {"release": release_id, "environment": "Dev"}
        task_id = self.call("POST", "/deployments", 201, json=body)["task_id"]
        task = wait_until(
            lambda: (t := self.call("GET", f"/tasks/{task_id}"))["state"] in FINAL_STATES and t,
            180,
            f"task {task_id}",
            every=0.2,
        )
        log = self.call("GET", f"/tasks/{task_id}/log", params={"since": 0, "take": 1000})
        return task, "\n".join(line["message"] for line in log["items"])


def _first_deployment(server: ServeProcess, database: str | None) -> str:
    """Set up a project needing a package and a secret, deploy it; return the release id."""
    with Api(server, database) as api:
        api.call("POST", "/environments", 201, json={"name": "Dev"})
        package = api.call(
            "POST", "/packages", 201, files={"file": ("RoundTrip.1.0.0.zip", _package())}
        )
        project = api.call("POST", "/projects", 201, json={"name": "roundtrip"})
        steps = [
            {
                "name": "Install",
                "type": "deploy-package",
                "properties": {"package": package["package_id"], "run_on": "appliance"},
            },
            {
                "name": "Check",
                "type": "run-script",
                "properties": {
                    "syntax": "bash",
                    "run_on": "appliance",
                    "body": 'test "$(printf %s "#{Secret}" | sha256sum | cut -c1-64)" = '
                    f'"{hashlib.sha256(SECRET.encode()).hexdigest()}" && echo "secret opens"',
                },
            },
        ]
        api.call("PUT", f"/projects/{project['id']}/process", json={"steps": steps})
        variables = [{"name": "Secret", "value": SECRET, "sensitive": True}]
        api.call("PUT", f"/projects/{project['id']}/variables", json={"variables": variables})
        release = api.call("POST", f"/projects/{project['id']}/releases", 201, json={})
        task, log = api.deploy(release["id"])
        assert task["state"] == "success", log
        assert f"package says {PAYLOAD}" in log and "secret opens" in log
        return str(release["id"])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    from tests.conftest import drop_pg_schema

    url: str = request.getfixturevalue("pg_url")
    drop_pg_schema(url)
    yield url


def _data_args(data_dir: Path, database: str | None) -> list[str]:
    return ["--data-dir", str(data_dir), *(["--database", database] if database else [])]


def test_backup_while_serving_wipe_restore_with_the_key_and_deploy_the_old_release(
    tmp_path: Path, database: str | None
) -> None:
    from tests.conftest import drop_pg_schema

    data_dir, backup = tmp_path / "data", tmp_path / "backups" / "octo.tar"
    with ServeProcess(data_dir, database=database) as server:
        release_id = _first_deployment(server, database)
        done = _cli("backup", "--output", str(backup), *_data_args(data_dir, database))
        assert done.returncode == 0, done.stderr
    key_file = server.key_file
    assert key_file is not None
    ring = read_keyring_file(key_file)
    assert f"backup written: {backup}" in done.stdout
    assert f"sealed under master key id {ring.current.key_id}" in done.stdout

    raw = backup.read_bytes()
    assert ring.current.to_text().encode() not in raw and ring.current.material not in raw
    with tarfile.open(backup) as archive:
        names = archive.getnames()
    assert names[0] == "octo-backup.json"
    assert not [name for name in names if "master.key" in name]
    assert any(name.startswith("data/files/packages/") for name in names)
    assert SECRET.encode() not in raw, "a sensitive value in clear"
    assert PAYLOAD.encode() not in raw, "package content or its log line in clear"

    # the machine is lost: data dir and database gone, the key kept apart
    shutil.rmtree(data_dir)
    shutil.rmtree(server.worker_dir, ignore_errors=True)  # the worker's journal and cache too
    if database:
        drop_pg_schema(database)
    keep_key_beside(data_dir)  # the operator's settings: where the key is to be
    key_file.unlink()

    missing = _cli("restore", "--input", str(backup), *_data_args(data_dir, database))
    assert missing.returncode == 1
    assert (
        f"restore needs the master key the backup was sealed with (key id {ring.current.key_id})"
        f" and there is none at {key_file}" in missing.stderr
    )
    assert "hint: put that key in" in missing.stderr and "OCTO_MASTER_KEY" in missing.stderr

    wrong = KeyRing(MasterKey.generate())
    write_keyring(key_file, wrong)
    refused = _cli("restore", "--input", str(backup), *_data_args(data_dir, database))
    assert refused.returncode == 1
    assert f"is not the one the backup was sealed with (key id {ring.current.key_id})" in (
        refused.stderr
    )
    assert "Traceback" not in missing.stderr + refused.stderr
    assert {p.name for p in data_dir.iterdir()} <= {"appliance.lock", "config.toml"}

    key_file.write_text(ring.current.to_text() + "\n")  # as 'master-key show' printed it
    restored = _cli("restore", "--input", str(backup), *_data_args(data_dir, database))
    assert restored.returncode == 0, restored.stderr
    assert f"restored {backup}" in restored.stdout

    with ServeProcess(data_dir, database=database) as server:
        assert not server.banner.first_start
        with Api(server, database) as api:
            task, log = api.deploy(release_id)
    assert task["state"] == "success", log
    assert f"package says {PAYLOAD}" in log and "secret opens" in log


def test_restore_refuses_a_non_empty_data_dir_and_a_file_that_is_no_backup(
    tmp_path: Path,
) -> None:
    data_dir, backup = tmp_path / "data", tmp_path / "octo.tar"
    with ServeProcess(data_dir):
        assert _cli("backup", "--output", str(backup), "--data-dir", str(data_dir)).returncode == 0
    over = _cli("restore", "--input", str(backup), "--data-dir", str(data_dir))
    assert over.returncode == 2
    assert f"the data dir {data_dir} is not empty" in over.stderr
    assert "restore never overwrites" in over.stderr

    bogus = tmp_path / "bogus.tar"
    with tarfile.open(bogus, "w") as archive:
        info = tarfile.TarInfo("../escape")
        archive.addfile(info, io.BytesIO(b""))
    fresh = tmp_path / "fresh"
    for source in (bogus, tmp_path / "absent.tar"):
        done = _cli("restore", "--input", str(source), "--data-dir", str(fresh))
        assert done.returncode == 2 and "hint:" in done.stderr, done.stderr
    assert not (tmp_path / "escape").exists()


def test_a_key_kept_inside_the_data_dir_is_never_backed_up(tmp_path: Path) -> None:
    data_dir, backup = tmp_path / "data", tmp_path / "octo.tar"
    data_dir.mkdir()
    key_file = data_dir / "files" / "master.key"  # an operator's unwise setting
    (data_dir / "config.toml").write_text(f'master_key_file = "{key_file}"\n')
    with ServeProcess(data_dir) as server:
        done = _cli("backup", "--output", str(backup), "--data-dir", str(data_dir))
    assert f"master_key_file {key_file} is inside the data dir" in server.stderr
    assert done.returncode == 0, done.stderr
    assert "left out: files/master.key (the master key)" in done.stdout
    ring = read_keyring_file(key_file)
    assert ring.current.to_text().encode() not in backup.read_bytes()


def _shared_files(shared: Path) -> dict[str, str]:
    """What every node reads from ``shared_dir``: relative path -> SHA-256 of its bytes."""
    return {
        str(path.relative_to(shared)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(shared.rglob("*"))
        if path.is_file()
    }


def _node_settings(data_dir: Path, shared: Path, key_file: Path) -> None:
    """The node's config.toml, as an operator of several nodes writes it: a shared_dir and the
    key kept apart (written again after the data dir is lost)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = {"shared_dir": str(shared), "master_key_file": str(key_file)}
    (data_dir / "config.toml").write_text(
        "".join(f"{name} = {json.dumps(value)}\n" for name, value in settings.items())
    )


@pytest.mark.postgres
def test_a_node_with_a_shared_dir_backs_it_up_and_restore_puts_it_back(
    tmp_path: Path, pg_url: str
) -> None:
    from tests.conftest import drop_pg_schema

    drop_pg_schema(pg_url)
    data_dir, shared, backup = tmp_path / "data", tmp_path / "shared", tmp_path / "octo.tar"
    key_file = tmp_path / "key" / "master.key"
    _node_settings(data_dir, shared, key_file)
    with ServeProcess(data_dir, database=pg_url) as server:
        thumbprint = server.banner.thumbprint
        release_id = _first_deployment(server, pg_url)
        done = _cli("backup", "--output", str(backup), *_data_args(data_dir, pg_url))
        assert done.returncode == 0, done.stderr
    before = _shared_files(shared)
    assert "tls.key" in before and "files/keys/signing-ed25519.sealed" in before
    assert any(name.startswith("files/packages/") for name in before)
    with tarfile.open(backup) as archive:
        names = set(archive.getnames())
    assert {f"shared/{name}" for name in before} <= names
    assert not [name for name in names if name.startswith(("data/files", "data/tls"))]

    # node and shared directory lost, the database too; the key (kept apart) and settings kept
    shutil.rmtree(data_dir)
    shutil.rmtree(server.worker_dir, ignore_errors=True)
    shutil.rmtree(shared)
    drop_pg_schema(pg_url)
    _node_settings(data_dir, shared, key_file)

    restored = _cli("restore", "--input", str(backup), *_data_args(data_dir, pg_url))
    assert restored.returncode == 0, restored.stderr
    assert _shared_files(shared) == before
    assert not (data_dir / "files").exists() and not (data_dir / "tls.key").exists()

    again = tmp_path / "another-node"
    _node_settings(again, shared, key_file)
    refused = _cli("restore", "--input", str(backup), *_data_args(again, pg_url))
    assert refused.returncode == 2
    assert f"the shared_dir {shared} is not empty" in refused.stderr
    assert "restore once, on one node" in refused.stderr

    with ServeProcess(data_dir, database=pg_url) as server:
        assert server.banner.thumbprint == thumbprint  # the same certificate: agents trust it
        with Api(server, pg_url) as api:
            task, log = api.deploy(release_id)
    assert task["state"] == "success", log
    assert f"package says {PAYLOAD}" in log
