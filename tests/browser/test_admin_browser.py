"""The administration pages in Debian's chromium against a real appliance process, by the
keyboard and the forms alone: environments (a refused form keeps what was typed), a target
and its health check, the add-target page's one-line install, users, teams and grants, an API
key shown once, the audit log filtered, plugins; on every page no CSP violation, no secret,
axe-core finds no serious or critical violation, and a screenshot for the reviewer."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from octo_appliance.agent.home import Home
from tests.agent.support import AgentProcess
from tests.browser.conftest import PortalServer
from tests.browser.journey_support import run_register_line
from tests.browser.test_portal_browser import Watched
from tests.fleet import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _target(server: PortalServer) -> str:
    """A target in Dev (made through the API: registering a real agent is the journey's)."""
    with server.server.http2_client() as client:
        login = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": server.password}
        )
        body = {"name": "web-01", "environments": ["Dev"], "roles": ["web"]}
        answer = client.post(
            "/api/v1/targets", json=body, headers={"X-CSRF-Token": login.json()["csrf_token"]}
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


def _check(watched: Watched, axe: Callable[[Any, str], None], name: str) -> None:
    axe(watched.page, name)
    watched.check(name)


def _sign_in(page: Page, server: PortalServer, path: str) -> None:
    page.goto(server.origin + path)
    page.fill("#username", "admin")
    page.fill("#password", server.password)
    page.keyboard.press("Enter")
    page.wait_for_url(server.origin + path)


def test_environments_targets_and_add_target(
    browser: Browser, portal_server: PortalServer, axe: Callable[[Any, str], None]
) -> None:
    target_id = _target(portal_server)
    context = browser.new_context(ignore_https_errors=True)
    watched = Watched(context.new_page(), portal_server.secret)
    page = watched.page
    _sign_in(page, portal_server, "/environments")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Environments"
    _check(watched, axe, "admin-01-environments")

    page.fill("#env-name", "")
    page.fill("#env-description", "The staging ring")
    page.fill("#env-order", "99999999")
    page.click("text=Create environment")
    error = page.locator("#env-order-error").inner_text()
    assert error == "Input should be less than or equal to 1000000"
    assert page.input_value("#env-description") == "The staging ring"  # nothing typed is lost
    assert page.get_attribute("#env-name", "aria-invalid") == "true"
    _check(watched, axe, "admin-02-environment-refused")

    page.fill("#env-name", "Staging")
    page.fill("#env-order", "1")
    page.focus("#env-order")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/environments/env_\w+$"))
    assert page.locator("h1").inner_text() == "Staging"
    _check(watched, axe, "admin-03-environment")

    page.goto(portal_server.origin + "/environments")
    page.click("text=Dev")
    row = page.locator("tr", has_text="web-01")
    assert row.locator("td").nth(2).inner_text() == "none"  # comms style
    assert row.locator("td").nth(3).inner_text() == "never"  # last seen
    page.click("text=Add a target")
    page.fill("#add-roles", "web, db")
    page.select_option("#add-mode", "polling")
    page.click("text=Make the install command")
    command = page.locator("pre[aria-label='One-line install command']").inner_text()
    assert command.startswith("curl -fsSk --pinnedpubkey 'sha256//")
    assert f"https://127.0.0.1:{portal_server.server.port}/bootstrap/agent.sh" in command
    token = re.search(r"--token (\S+) --poll", command)
    assert token is not None
    register = page.locator("pre[aria-label='octo-agent register command']").inner_text()
    assert token.group(1) in register and "--token-file -" in register
    _check(watched, axe, "admin-04-add-target-command")
    page.goto(page.url)  # the add-target page again: a fresh form, the token gone
    assert page.locator("#add-roles").count() == 1
    assert token.group(1) not in page.content()

    page.goto(f"{portal_server.origin}/targets/{target_id}")
    assert page.locator("h1").inner_text() == "web-01"
    _check(watched, axe, "admin-05-target")
    page.click("text=Run a health check")
    page.wait_for_url(re.compile(r".*/tasks/task_\w+$"))  # its task's page (portal-tasks')
    context.close()


def test_users_teams_keys_audit_and_plugins(
    browser: Browser, portal_server: PortalServer, axe: Callable[[Any, str], None]
) -> None:
    context = browser.new_context(ignore_https_errors=True)
    watched = Watched(context.new_page(), portal_server.secret)
    page = watched.page
    _sign_in(page, portal_server, "/users")
    page.fill("#user-username", "dora")
    page.fill("#user-display", "Dora Deployer")
    page.fill("#user-password", "too-short")
    page.click("text=Create user")
    assert "at least 12" in page.locator("#user-password-error").inner_text()
    assert page.input_value("#user-display") == "Dora Deployer"
    assert page.input_value("#user-password") == ""  # a password never comes back
    _check(watched, axe, "admin-06-user-refused")
    page.fill("#user-password", "dora-password-12")
    page.click("text=Create user")
    page.wait_for_url(portal_server.origin + "/users")
    assert page.locator("tr", has_text="dora").count() == 1
    _check(watched, axe, "admin-07-users")

    page.click("nav >> text=Teams")
    page.fill("#team-name", "Deployers")
    page.fill("#team-members", "dora")
    page.select_option("#grant-0-role", "project-deployer")
    page.fill("#grant-0-environments", "Dev")
    page.fill("#grant-0-projects", "Shop")
    page.click("text=Create team")
    page.wait_for_url(re.compile(r".*/teams/\w+$"))
    assert "project-deployer in Dev for Shop" in page.inner_text("main")
    _check(watched, axe, "admin-08-team")
    page.click("nav >> text=Teams")
    _check(watched, axe, "admin-09-teams")

    page.click("nav >> text=API keys")
    page.fill("#key-name", "ci pipeline")
    page.click("text=Create key")
    key = page.locator("pre[aria-label='The new API key']").inner_text()
    assert key.startswith("OCTO-")
    _check(watched, axe, "admin-10-key-created")
    page.click("nav >> text=API keys")
    assert key not in page.content() and "ci pipeline" in page.inner_text("main")
    _check(watched, axe, "admin-11-keys")

    page.click("nav >> text=Audit")
    page.fill("#audit-type", "team")
    page.click("text=Filter")
    assert "resource_type=team" in page.url  # a filtered page is a deep link
    assert "Deployers" in page.inner_text("main")
    assert key not in page.content()
    _check(watched, axe, "admin-12-audit")

    page.click("nav >> text=Plugins")
    assert page.locator("tbody tr").count() >= 1
    _check(watched, axe, "admin-13-plugins")
    context.close()


def test_the_printed_register_command_brings_a_healthy_agent(
    browser: Browser,
    portal_server: PortalServer,
    axe: Callable[[Any, str], None],
    tmp_path: Path,
) -> None:
    """The add-target page's ``octo-agent register`` line, run as printed (only the home and
    the program's path changed for the test), registers a real polling agent, which the
    environment page then shows healthy, with its agent version and comms style."""
    context = browser.new_context(ignore_https_errors=True)
    watched = Watched(context.new_page(), portal_server.secret)
    page = watched.page
    _sign_in(page, portal_server, "/environments")
    page.click("text=Dev")
    env_url = page.url
    page.click("text=Add a target")
    page.fill("#add-roles", "app")
    page.click("text=Make the install command")
    line = page.locator("pre[aria-label='octo-agent register command']").inner_text()
    home = tmp_path / "agent-home"
    run_register_line(line, home, "portal-agent")
    agent = AgentProcess([Home(home)]).start()
    try:

        def healthy() -> bool:
            page.goto(env_url)
            row = page.locator("tr", has_text="portal-agent")
            return row.count() == 1 and row.locator("td").first.inner_text() == "Healthy"

        wait_until(healthy, 90, "the registered agent to be healthy on the environment page")
        cells = page.locator("tr", has_text="portal-agent").locator("td").all_inner_texts()
        assert cells[1] not in ("", "—") and cells[2] == "polling" and cells[3] != "never"
        _check(watched, axe, "admin-14-agent-healthy")
    finally:
        agent.close()
    context.close()
