"""``http-check``: its target-side command in a real runner against a real HTTP server, its
property schema, and a deployment on real agents and the built-in worker."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from octo_http_check.plugin import HttpCheck

from octo_appliance.plugin_api import property_problems
from octo_appliance.steps.target_runs import run_in_runner
from tests.plugin_fleet import deploy, fleet_with_plugins, task_log


class Server(http.server.ThreadingHTTPServer):
    """Answers 503 to the first ``failures`` requests, then ``status`` with ``body``."""

    failures = 0
    status = 200
    body = b"ready"
    seen = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/health"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

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


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def check(server_url: str, tmp_path: Path, **arguments: object):  # type: ignore[no-untyped-def]
    values = {"url": server_url, "interval_seconds": 0, "timeout_seconds": 30, **arguments}
    return run_in_runner(HttpCheck, "http-check", values, work_dir=tmp_path)


def test_it_waits_through_failures_until_the_url_answers(server: Server, tmp_path: Path) -> None:
    server.failures = 3
    run = check(server.url, tmp_path, expected_body="ready")
    assert run.success, (run.messages, run.stderr)
    assert run.outputs == {"HttpStatus": "200", "HttpAttempts": "4"}
    assert "attempt 1: HTTP 503, expected 200" in run.messages


def test_it_gives_up_after_max_attempts_naming_the_last_problem(
    server: Server, tmp_path: Path
) -> None:
    run = check(server.url, tmp_path, expected_body="healthy", max_attempts=2)
    assert not run.success
    assert server.seen == 2
    assert run.result["message"].endswith(
        "within 2 attempt(s); last: HTTP 200, but the body does not contain 'healthy'"
    )


def test_it_gives_up_at_the_timeout_when_nothing_listens(tmp_path: Path) -> None:
    run = check("http://127.0.0.1:9/", tmp_path, timeout_seconds=1, interval_seconds=0.2)
    assert not run.success
    assert "did not answer HTTP 200 within 1 s; last: no answer" in run.result["message"]


def test_an_expected_error_status_counts_as_up(server: Server, tmp_path: Path) -> None:
    server.status, server.body = 404, b"gone"
    run = check(server.url, tmp_path, expected_status=404, max_attempts=1)
    assert run.success, run.messages


def test_the_properties_are_declared_and_checked() -> None:
    step = HttpCheck()
    assert {p.name for p in step.properties} >= {"url", "timeout_seconds", "max_attempts"}
    assert [p.field for p in property_problems(step, {})] == ["url"]
    problems = property_problems(step, {"url": "ftp://x", "run_on": "moon", "retries": 3})
    assert {p.field for p in problems} == {"url", "run_on", "retries"}
    assert property_problems(step, {"url": "#{Site.Url}/health", "timeout_seconds": 5}) == []


@pytest.mark.slow
def test_a_deployment_checks_from_each_agent_and_from_the_appliance(
    server: Server, tmp_path: Path
) -> None:
    with fleet_with_plugins(tmp_path / "fleet", ["http-check"]) as fleet:
        agents = fleet.register_many([("web-listening", "listening"), ("web-polling", "polling")])
        fleet.start_agents(agents)
        fleet.wait_connected(agents)
        server.failures = 2
        properties = {"url": server.url, "interval_seconds": 0, "expected_body": "ready"}
        steps = [
            {"name": "From targets", "type": "http-check", "roles": ["web"],
             "properties": properties},
            {"name": "From appliance", "type": "http-check",
             "properties": {**properties, "run_on": "appliance"}},
        ]  # fmt: skip
        task = deploy(fleet, steps)
        log = task_log(fleet, task["id"])
        assert task["state"] == "success", f"{task['error']}\n{log}"
        for name in ("web-listening", "web-polling", "appliance"):
            assert any("answered HTTP 200" in line for line in fleet.log_of(task["id"], name))
        rows = {row["name"]: row for row in fleet.call("GET", "/plugins")["items"]}
        assert rows["octo-http-check"]["step_types"] == ["http-check"]
