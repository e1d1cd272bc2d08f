"""Smoke test of the single executable: build it (when stale), run it, talk HTTP/2 and HTTP/3.

The build takes about a minute on two cores, so it only runs when ``dist/octo-appliance`` is
older than a file it is made from (``octo_appliance/``, ``runner/``, ``appliance.spec``, the
build script).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.h3client import h3_get
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.binary

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "octo-appliance"
BUILD_SCRIPT = ROOT / "build" / "build_appliance.sh"
HEALTH = "/api/v1/health"


def _sources() -> Iterator[Path]:
    yield ROOT / "appliance.spec"
    yield BUILD_SCRIPT
    for package in (ROOT / "octo_appliance", ROOT / "runner" / "octo_runner"):
        for path in package.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path


def _is_stale() -> bool:
    if not BINARY.is_file():
        return True
    built = BINARY.stat().st_mtime
    return any(path.stat().st_mtime > built for path in _sources())


@pytest.fixture(scope="module")
def binary() -> Path:
    if _is_stale():
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
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
