"""What the first-party plugins' end-to-end tests share (``plugins/*/tests`` on the
development install, ``tests/binary`` on the single executable): a real HTTP server to
check, a fake ``systemctl`` (this machine runs no systemd), and the two deployments.

Each deployment runs through a :class:`~tests.fleet.Fleet` whose appliance loaded the plugins'
wheels (:mod:`tests.plugin_fleet`), on real agents that fetch the plugins' bundles.
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fleet import Fleet
from tests.packages_support import zip_bytes
from tests.plugin_fleet import deploy

ROOT = Path(__file__).resolve().parents[1]
FAKE_SYSTEMCTL = ROOT / "plugins" / "systemd-service" / "tests" / "fake_systemctl.py"
GOOD_UNIT = "[Service]\nExecStart=/usr/bin/sleep infinity\n"
BAD_UNIT = "[Service]\nExecStart=/bin/false\n"


class HealthServer(http.server.ThreadingHTTPServer):
    """Answers 503 to the first ``failures`` requests, then ``status`` with ``body``."""

    failures = 0
    status = 200
    body = b"ready"
    seen = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/health"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        self.server.seen += 1
        failing = self.server.seen <= self.server.failures
        status, body = (503, b"starting") if failing else (self.server.status, self.server.body)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def health_server() -> Iterator[HealthServer]:
    httpd = HealthServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


class FakeSystemd:
    """A fake ``systemctl`` in ``bin/`` (plugins/systemd-service/tests/fake_systemctl.py)
    and the unit folder it loads units from."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.units = root / "units"
        self.bin.mkdir(parents=True)
        self.units.mkdir()
        script = FAKE_SYSTEMCTL.read_text(encoding="utf-8")
        program = self.bin / "systemctl"
        program.write_text(f"#!{sys.executable}\n{script}", encoding="utf-8")
        program.chmod(0o755)
        (self.bin / "config.json").write_text(json.dumps({"unit_dir": str(self.units)}))

    @property
    def path(self) -> str:
        """A PATH with the fake first."""
        return f"{self.bin}{os.pathsep}{os.environ['PATH']}"

    def calls(self) -> list[str]:
        log = self.bin / "state" / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def state(self, unit: str) -> str:
        path = self.bin / "state" / "active" / unit
        return path.read_text() if path.exists() else "inactive"

    def reset_calls(self) -> None:
        (self.bin / "state" / "calls.log").unlink(missing_ok=True)


def check_from_agents_and_appliance(fleet: Fleet, server: HealthServer) -> None:
    """``http-check`` from a listening and a polling agent, then from the appliance; the
    server fails the first attempts."""
    agents = fleet.register_many([("web-listening", "listening"), ("web-polling", "polling")])
    fleet.start_agents(agents)
    fleet.wait_connected(agents)
    server.failures = 2
    properties = {"url": server.url, "interval_seconds": 0, "expected_body": "ready"}
    steps = [
        {"name": "From targets", "type": "http-check", "roles": ["web"], "properties": properties},
        {
            "name": "From appliance",
            "type": "http-check",
            "properties": {**properties, "run_on": "appliance"},
        },
    ]
    task = deploy(fleet, steps)
    assert task["state"] == "success", f"{task['error']}\n{fleet.text_log(task['id'])}"
    for name in ("web-listening", "web-polling", "appliance"):
        assert any("answered HTTP 200" in line for line in fleet.log_of(task["id"], name))


def install_then_roll_back(fleet: Fleet, systemd: FakeSystemd) -> None:
    """``deploy-package`` + ``systemd-service`` on a listening agent (whose PATH has the
    fake ``systemctl``): a good unit is installed; a broken update is rolled back."""
    agent = fleet.register("svc-1", "listening", roles=["svc"])
    fleet.start_agents([agent])
    install_dir = "#{Octopus.Action[Install].Output.Package.InstallationDirectoryPath}"
    steps = [
        {"name": "Install", "type": "deploy-package", "roles": ["svc"],
         "properties": {"package": "App"}},
        {"name": "Service", "type": "systemd-service", "roles": ["svc"],
         "properties": {"unit_name": "app.service", "unit_file": f"{install_dir}/app.service",
                        "unit_dir": str(systemd.units), "wait_seconds": 5}},
    ]  # fmt: skip
    task: dict[str, object] = {}
    for version, unit, state in (("1.0.0", GOOD_UNIT, "success"), ("1.0.1", BAD_UNIT, "failed")):
        archive = zip_bytes({"app.service": unit.encode()})
        upload = {"file": (f"App.{version}.zip", archive, "application/octet-stream")}
        fleet.call("POST", "/packages", 201, files=upload, timeout=120)
        task = deploy(fleet, steps)
        assert task["state"] == state, fleet.text_log(str(task["id"]))
        assert (systemd.units / "app.service").read_text() == GOOD_UNIT
        assert systemd.state("app.service") == "active"
    lines = fleet.log_of(str(task["id"]), "svc-1")
    assert any(line.startswith("restored the previous ") for line in lines), lines
