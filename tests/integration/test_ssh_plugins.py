"""A step plugin with target-side code on SSH targets, end to end: a real appliance process
loading the first-party ``http-check`` wheel from its plugins folder, the tests' real sshd, the
step run from two SSH targets (its command bundle uploaded over SFTP by SHA-256 and reused by
the next deployment)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.first_party import HealthServer, health_server
from tests.plugin_fleet import deploy, fleet_with_plugins
from tests.sshd import NEEDS_SSHD, Sshd

pytestmark = [
    pytest.mark.slow,
    NEEDS_SSHD,
]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    with Sshd(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def server() -> Iterator[HealthServer]:
    with health_server() as httpd:
        yield httpd


def test_http_check_runs_from_ssh_targets_with_its_bundle_uploaded_once(
    sshd: Sshd, server: HealthServer, tmp_path: Path
) -> None:
    names = ["ssh-check-1", "ssh-check-2"]
    with fleet_with_plugins(tmp_path / "fleet", ["http-check"]) as fleet:
        for name in names:
            settings = {
                "host": "127.0.0.1",
                "port": sshd.port,
                "user": sshd.user,
                "host_key_fingerprint": sshd.host_key_fingerprint,
                "directory": str(tmp_path / name),
                "private_key": sshd.client_key,
            }
            body = {"name": name, "environments": ["Dev"], "roles": ["web"]}
            body.update(communication_style="ssh", transport_settings=settings)
            fleet.call("POST", "/targets", 201, json=body)
        properties = {"url": server.url, "interval_seconds": 0, "expected_body": "ready"}
        step = {"name": "Check", "type": "http-check", "roles": ["web"], "properties": properties}
        server.failures = 2
        bundles: dict[str, tuple[Path, int]] = {}
        for _ in range(2):
            task = deploy(fleet, [step])
            assert task["state"] == "success", f"{task['error']}\n{fleet.text_log(task['id'])}"
            for name in names:
                assert any("answered HTTP 200" in line for line in fleet.log_of(task["id"], name))
                placed = list((tmp_path / name / "plugins").iterdir())
                assert len(placed) == 1, placed
                digest = hashlib.sha256(placed[0].read_bytes()).hexdigest()
                assert placed[0].name == f"{digest}.zip"
                seen = (placed[0], placed[0].stat().st_mtime_ns)
                # the second deployment reuses the bundle: nothing is sent again
                assert bundles.setdefault(name, seen) == seen
