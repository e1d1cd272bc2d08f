"""``http-check``: its target-side command in a real runner against a real HTTP server, its
property schema, and a deployment on real agents and the built-in worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from octo_http_check.plugin import HttpCheck

from octo_appliance.plugin_api import property_problems
from octo_appliance.steps.target_runs import run_in_runner
from tests.first_party import HealthServer, check_from_agents_and_appliance, health_server
from tests.plugin_fleet import fleet_with_plugins


@pytest.fixture
def server() -> Iterator[HealthServer]:
    with health_server() as httpd:
        yield httpd


def check(server_url: str, tmp_path: Path, **arguments: object):  # type: ignore[no-untyped-def]
    values = {"url": server_url, "interval_seconds": 0, "timeout_seconds": 30, **arguments}
    return run_in_runner(HttpCheck, "http-check", values, work_dir=tmp_path)


def test_it_waits_through_failures_until_the_url_answers(
    server: HealthServer, tmp_path: Path
) -> None:
    server.failures = 3
    run = check(server.url, tmp_path, expected_body="ready")
    assert run.success, (run.messages, run.stderr)
    assert run.outputs == {"HttpStatus": "200", "HttpAttempts": "4"}
    assert "attempt 1: HTTP 503, expected 200" in run.messages


def test_it_gives_up_after_max_attempts_naming_the_last_problem(
    server: HealthServer, tmp_path: Path
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


def test_an_expected_error_status_counts_as_up(server: HealthServer, tmp_path: Path) -> None:
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
    server: HealthServer, tmp_path: Path
) -> None:
    with fleet_with_plugins(tmp_path / "fleet", ["http-check"]) as fleet:
        rows = {row["name"]: row for row in fleet.call("GET", "/plugins")["items"]}
        assert rows["octo-http-check"]["step_types"] == ["http-check"]
        check_from_agents_and_appliance(fleet, server)
