"""The single executable: build it (when stale), run it, talk HTTP/2 and HTTP/3, and carry out
the same end-to-end deployment as the development install (:mod:`tests.deployment_scenario`).

The build takes minutes on two shared cores, so it only runs when the files it is made from
(``octo_appliance/``, ``runner/octo_runner/``, ``appliance.spec``, the build script) differ from
those of the last build: their SHA-256 is recorded beside the executable
(``dist/octo-appliance.sources-sha256``), so a checkout or a merge that leaves them as they
were (but touches their times) does not rebuild.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import octo_runner
import pytest

from octo_appliance.runner_bundle import archive_bytes
from octo_appliance.transports.worker_account import SYSTEM_PATH
from tests.conftest import AGENT_BUILDS
from tests.deployment_scenario import run_scenario
from tests.fleet import running_fleet
from tests.h3client import h3_get
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.binary

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "octo-appliance"
#: the SHA-256 of the sources the executable was built from
STAMP = BINARY.with_name(BINARY.name + ".sources-sha256")
BUILD_SCRIPT = ROOT / "build" / "build_appliance.sh"
HEALTH = "/api/v1/health"


def _sources() -> Iterator[Path]:
    yield ROOT / "appliance.spec"
    yield BUILD_SCRIPT
    yield ROOT / "agent.spec"  # the embedded agent is built from it
    for package in (ROOT / "octo_appliance", ROOT / "runner" / "octo_runner"):
        for path in package.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path


def sources_digest() -> str:
    """One SHA-256 over the names and contents of every file the executable is made from."""
    digest = hashlib.sha256()
    for path in sorted(_sources()):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def binary() -> Path:
    digest = sources_digest()
    if not (BINARY.is_file() and STAMP.is_file() and STAMP.read_text().strip() == digest):
        STAMP.unlink(missing_ok=True)
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            cwd=ROOT,
            # embed the agent build the frozen-agent fixtures share (built there at most once)
            env={**os.environ, "OCTO_AGENT_BUILD_DIR": str(AGENT_BUILDS)},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        STAMP.write_text(digest + "\n", encoding="ascii")
    return BINARY


def test_version(binary: Path) -> None:
    result = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("octo-appliance ")


def test_serves_http2_and_http3_and_stops_on_sigterm(binary: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ServeProcess(data_dir, command=[str(binary)]) as server:
        assert server.banner.admin_password
        with server.http2_client() as client:
            response = client.get(HEALTH)
        assert response.status_code == 200
        assert response.http_version == "HTTP/2"
        assert f'h3=":{server.port}"' in response.headers["alt-svc"]

        status, _, body = asyncio.run(
            asyncio.wait_for(h3_get(server.host, server.port, HEALTH, cafile=server.cert_file), 30)
        )
        assert status == 200
        assert b'"status":"ok"' in body

        created = subprocess.run(
            [str(binary), "api-key", "create", "--data-dir", str(data_dir), "--user", "admin"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]
        with server.http2_client() as client:
            listed = client.get("/api/v1/environments", headers={"X-Api-Key": key})
        assert listed.status_code == 200, listed.text

        assert server.stop(signal.SIGTERM) == 0
    assert "Traceback" not in server.stderr


def test_runs_a_runner_zipapp_given_as_first_argument(binary: Path, tmp_path: Path) -> None:
    """How the executable starts the runner where it has no other Python (the issue's
    ``invalid choice: '.../octo-runner-0.1.0.pyz'``)."""
    pyz = tmp_path / f"octo-runner-{octo_runner.__version__}.pyz"
    pyz.write_bytes(archive_bytes())
    done = subprocess.run(
        [str(binary), str(pyz), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"octo-runner {octo_runner.__version__} "), done.stdout


def without_system_python(binary: Path) -> list[str]:
    """``binary`` started in a mount namespace of its own where every ``python3`` the
    built-in worker looks for is ``/dev/null`` (not executable): an appliance machine
    without Python, on which the executable must run the runner itself (so the worker
    account, ``octo-worker`` as root, must be able to execute it: a checkout under a 0700
    home directory is not)."""
    hidden = sorted(
        {os.path.realpath(p) for d in SYSTEM_PATH.split(":") if os.path.exists(p := f"{d}/python3")}
    )
    mounts = "".join(f"mount --bind /dev/null {path} && " for path in hidden)
    script = f'{mounts}exec "$0" "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(binary)]


@pytest.mark.parametrize("system_python", [True, False], ids=["python3", "no-python3"])
def test_deploys_end_to_end_like_the_development_install(
    binary: Path, tmp_path: Path, system_python: bool
) -> None:
    command = [str(binary)]
    if not system_python:
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            pytest.skip("hiding python3 needs root and unshare")
        command = without_system_python(binary)
    with running_fleet(tmp_path, appliance_command=command) as fleet:
        run_scenario(fleet)
        assert "Traceback" not in fleet.server.output()


def test_serves_the_agent_it_embeds_signed_and_that_agent_connects(
    binary: Path, tmp_path: Path
) -> None:
    """The frozen appliance serves its embedded octo-agent without an API key (over its own
    TLS); the manifest verifies with the key registration hands out, the bytes match it, and
    the downloaded executable registers, connects and runs a script."""
    from octo_appliance.builds.manifest import verify

    with running_fleet(tmp_path, appliance_command=[str(binary)]) as fleet:
        with fleet.server.http2_client() as client:
            manifest = client.get("/api/v1/agent", params={"platform": "linux-x86_64"})
            download = client.get("/api/v1/agent/download", params={"platform": "linux-x86_64"})
        assert manifest.status_code == 200, manifest.text
        assert download.status_code == 200, download.text
        body = manifest.json()
        assert body["component"] == "octo-agent"
        assert body["size"] == len(download.content)
        assert body["sha256"] == hashlib.sha256(download.content).hexdigest()
        agent = tmp_path / "octo-agent"
        agent.write_bytes(download.content)
        agent.chmod(0o755)

        fleet.agent_command = (str(agent),)
        polling = fleet.register("poll-downloaded", "polling")
        verify(body, polling.home.require_registered().signing_public_key)
        fleet.start_agents([polling])
        fleet.wait_connected([polling])
        task = fleet.wait_task(fleet.run_script("echo downloaded-agent-ran"), timeout=120)
        assert task["state"] == "success", task
