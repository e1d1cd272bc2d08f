"""The single executable: build it (when stale), run it, talk HTTP/2 and HTTP/3, and carry out
the same end-to-end deployment as the development install (:mod:`tests.deployment_scenario`).

The build takes minutes on two shared cores, so it only runs when the files it is made from
(``octo_appliance/``, ``runner/octo_runner/``, ``appliance.spec``, the build scripts and the
launcher) differ from
those of the last build: their SHA-256 is recorded beside the executable
(``dist/octo-appliance.sources-sha256``), so a checkout or a merge that leaves them as they
were (but touches their times) does not rebuild.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import octo_runner
import pytest

from octo_appliance.builds.runner import archive_bytes
from octo_appliance.plugin_loading.wheels import canonical_name
from octo_appliance.transports.worker_account import SYSTEM_PATH
from tests import build_cache
from tests.conftest import AGENT_BUILDS
from tests.deployment_scenario import run_scenario
from tests.first_party import (
    FakeSystemd,
    check_from_agents_and_appliance,
    health_server,
    install_then_roll_back,
)
from tests.fleet import running_fleet
from tests.h3client import h3_get
from tests.plugin_fleet import fleet_with_plugins
from tests.plugin_scenario import fill_plugins_folder, run_plugin_scenario
from tests.plugin_wheels import GREETING, builder
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
    yield ROOT / "build" / "pack_onefile.py"
    yield ROOT / "build" / "launcher" / "octo_launcher.c"
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
    """dist/octo-appliance of these sources: reused when its stamp matches, else copied from
    the build cache (tests/build_cache.py) or built into it first."""
    digest = sources_digest()
    if BINARY.is_file() and STAMP.is_file() and STAMP.read_text().strip() == digest:
        return BINARY
    STAMP.unlink(missing_ok=True)
    cached = build_cache.cached_file(build_cache.root() / f"octo-appliance-{digest}", _build)
    BINARY.parent.mkdir(exist_ok=True)
    partial = BINARY.with_name(f".{BINARY.name}.copying")
    shutil.copy2(cached, partial)
    os.replace(partial, BINARY)
    STAMP.write_text(digest + "\n", encoding="ascii")
    return BINARY


def _build(destination: Path) -> None:
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
    shutil.copy2(BINARY, destination)


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


def test_loads_plugins_beside_the_executable_and_deploys_a_wheels_step_type(
    binary: Path, tmp_path: Path
) -> None:
    """Wheels and a package folder in ``plugins/`` beside a copy of the executable: listed
    offline by ``plugin list`` and by ``GET /api/v1/plugins``, the broken ones skipped, the
    wheel's step type deployed on real agents (:mod:`tests.plugin_scenario`). Every
    first-party plugin of ``plugins/*/`` is built and must load too."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    executable = app_dir / binary.name
    shutil.copy2(binary, executable)
    folder = app_dir / "plugins"
    fill_plugins_folder(folder)
    first_party = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
    wheels = [builder().build_wheel(source, folder) for source in first_party]
    names = [canonical_name(wheel.name.split("-")[0]) for wheel in wheels]

    listed = subprocess.run(
        [str(executable), "plugin", "list", "--json", "--data-dir", str(tmp_path / "offline")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)["items"]}
    assert rows[GREETING]["state"] == "loaded", rows[GREETING]
    assert rows[GREETING]["source"] == "wheel"
    assert rows[GREETING]["location"].startswith(str(folder))
    for name in names:
        assert rows[name]["state"] == "loaded", rows[name]

    with running_fleet(tmp_path / "fleet", appliance_command=[str(executable)]) as fleet:
        run_plugin_scenario(fleet)
        assert "Traceback" not in fleet.server.output()


def test_deploys_the_first_party_plugins_on_real_agents(
    binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``plugins/http-check`` and ``plugins/systemd-service``, as wheels in the data dir's
    plugins folder, deployed by the single executable on real agents that fetch their
    target-side code: a URL checked from two agents and the built-in worker, a unit installed
    and a broken update rolled back (:mod:`tests.first_party`)."""
    systemd = FakeSystemd(tmp_path / "systemd")
    monkeypatch.setenv("PATH", systemd.path)  # the agents' environment is their runners'
    distributions = ["http-check", "systemd-service"]
    with (
        health_server() as server,
        fleet_with_plugins(
            tmp_path / "fleet", distributions, appliance_command=[str(binary)]
        ) as fleet,
    ):
        check_from_agents_and_appliance(fleet, server)
        install_then_roll_back(fleet, systemd)
        assert "Traceback" not in fleet.server.output()


def _unpacked(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "octo-appliance").iterdir())


def test_first_starts_at_once_unpack_one_copy_that_later_starts_reuse(
    binary: Path, tmp_path: Path
) -> None:
    """The launcher (docs/executable-cache.md): concurrent first starts race to rename their
    private copy into place; one wins, the others use it and delete theirs."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    starts = [
        subprocess.Popen([str(binary), "version"], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for start in starts:
        out, _ = start.communicate(timeout=120)
        assert start.returncode == 0 and out.startswith("octo-appliance ")
    [key] = _unpacked(tmp_path / "cache")  # no half-unpacked folder is left behind
    assert len(key) == 64
    program = tmp_path / "cache" / "octo-appliance" / key / "octo-appliance"
    before = program.stat().st_mtime_ns
    again = subprocess.run([str(binary), "version"], env=env, timeout=60, check=True)
    assert again.returncode == 0 and program.stat().st_mtime_ns == before


def test_the_launcher_refuses_a_cache_folder_others_can_write(binary: Path, tmp_path: Path) -> None:
    shared = tmp_path / "cache" / "octo-appliance"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [str(binary), "version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "not private to this user" in done.stderr and "hint: " in done.stderr
    assert list(shared.iterdir()) == []  # nothing unpacked where others could swap it


def test_the_launcher_publishes_nothing_from_a_damaged_executable(
    binary: Path, tmp_path: Path
) -> None:
    """A flipped bit in a packed file (docs/executable-cache.md): its xz stream or its CRC-32
    fails, the launcher stops with an error and a hint, and leaves no unpacked build to run."""
    damaged = tmp_path / "octo-appliance"
    data = bytearray(binary.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the payload: the embedded agent sits mid-file
    damaged.write_bytes(bytes(data))
    damaged.chmod(0o755)
    cache = tmp_path / "cache"
    done = subprocess.run(
        [str(damaged), "version"],
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "cannot unpack" in done.stderr and "hint: " in done.stderr
    assert _unpacked(cache) == []


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


def test_serves_the_portal_from_its_bundled_templates_and_assets(
    binary: Path, tmp_path: Path
) -> None:
    """The portal's templates and static files are package data: the executable carries them."""
    server = ServeProcess(tmp_path / "data", command=[str(binary)])
    with server, server.http2_client() as client:
        page = client.get("/signin")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        assert len(assets) == 3
        for url in assets:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["cache-control"].endswith("immutable")
        assert client.get("/").headers["location"] == "/signin"
    assert "Traceback" not in server.stderr
