"""Issue 12's acceptance journey, through the portal alone, in Debian's chromium against a
real ``serve`` process and a real agent: sign in, create the environments Dev and Prod, add a
target with the add-target page and run its printed register command, see the agent healthy
on the environment page, create a project, add a ``deploy-package`` and a manual-intervention
step with the generated forms, a plain and a sensitive variable, upload a package with the
form, create a release, deploy it to Dev, watch the live log, approve the intervention inline,
see the dashboard cell turn green without a reload, then promote the release to Prod.

Every page: axe-core without serious or critical violations, no CSP violation or console
error, the sensitive value nowhere in the HTML, and a screenshot
``tests/screenshots/journey-NN-<page>.png``. The second test loads the same pages over forced
QUIC and follows a deployment live there: every navigation and asset must be ``h3``."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from octo_appliance.agent.home import Home
from tests.agent.support import AgentProcess
from tests.browser import journey_support
from tests.browser.conftest import NAVIGATION_PROTOCOL, quic_args, screenshot_path
from tests.browser.journey_support import Journey, add_step, run_register_line, sign_in
from tests.browser.test_portal_browser import Watched
from tests.browser.test_task_pages_browser import NAVIGATIONS
from tests.fleet import wait_until
from tests.packages_support import zip_bytes
from tests.serve_process import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: every resource the page fetched over the network (a cached asset has no protocol to check)
FETCHED_PROTOCOLS = (
    "performance.getEntriesByType('resource')"
    ".filter((e) => e.transferSize > 0 || e.nextHopProtocol)"
    ".map((e) => [new URL(e.name).pathname, e.nextHopProtocol])"
)


@dataclass
class Appliance(journey_support.Appliance):
    """The journey's appliance, its agent's home and process, and the pages it went through."""

    agent_home: Path = Path()
    #: the journey's pages (paths), filled by the first test for the HTTP/3 one
    paths: list[str] = field(default_factory=list)
    agent: AgentProcess | None = None


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """A fresh appliance: nothing in it but the admin; the journey makes the rest."""
    password, secret = "admin-" + secrets.token_hex(8), "canary-" + secrets.token_hex(12)
    root = tmp_path_factory.mktemp("journey")
    with ServeProcess(root / "data", env={"OCTO_ADMIN_PASSWORD": password}) as server:
        origin = f"https://127.0.0.1:{server.port}"
        made = Appliance(origin, password, secret, server.cert_file, root / "agent")
        try:
            yield made
        finally:
            if made.agent is not None:
                made.agent.close()


def log_shows(page: Page, text: str, timeout: float = 90_000) -> None:
    """Wait until a line containing ``text`` is in the task page's log."""
    page.wait_for_function(
        "(text) => [...document.querySelectorAll('#log-lines .msg')]"
        ".some((m) => m.textContent.includes(text))",
        arg=text,
        timeout=timeout,
    )


def deploy(page: Page, button: str) -> None:
    """Press a release page's deploy or promote button; its task's page opens."""
    page.click(f"button:has-text('{button}')")
    page.wait_for_url(re.compile(r".*/tasks/task_\w+$"))


def approve(page: Page, notes: str) -> None:
    """Answer the task's manual intervention inline, then wait for the task to succeed."""
    page.wait_for_selector("form.answer textarea", timeout=90_000)
    page.fill("form.answer textarea", notes)
    page.click("form.answer button[value=approve]")
    page.wait_for_selector("#task-state.state-success", timeout=90_000)


def create_release(page: Page, project: str, version: str, journey: Journey | None) -> str:
    """A release made with the form (each package at its latest version); its page's URL."""
    page.goto(project + "/releases/new")
    page.fill("#f-version", version)
    if journey is not None:
        journey.check("release-new")
    page.click("button:has-text('Create release')")
    page.wait_for_url(f"{project}/releases/{version}")
    return page.url


def create_environment(journey: Journey, name: str, order: str) -> str:
    page = journey.page
    page.fill("#env-name", name)
    page.fill("#env-order", order)
    page.click("text=Create environment")
    page.wait_for_url(re.compile(r".*/environments/env_\w+$"))
    assert page.locator("h1").inner_text() == name
    journey.check(f"environment-{name.lower()}")
    return page.url


def register_agent(journey: Journey, appliance: Appliance, env_url: str) -> None:
    """The add-target page's register command, run as printed; the agent then runs."""
    page = journey.page
    page.click("text=Add a target")
    page.fill("#add-roles", "web")
    page.select_option("#add-mode", "polling")
    journey.check("add-target")
    page.click("text=Make the install command")
    line = page.locator("pre[aria-label='octo-agent register command']").inner_text()
    journey.check("add-target-command")
    run_register_line(line, appliance.agent_home, "web-01")
    appliance.agent = AgentProcess([Home(appliance.agent_home)]).start()

    def healthy() -> bool:
        page.goto(env_url)
        row = page.locator("tr", has_text="web-01")
        return row.count() == 1 and row.locator("td").first.inner_text() == "Healthy"

    wait_until(healthy, 90, "the registered agent to be healthy on Dev's page", every=1)
    cells = page.locator("tr", has_text="web-01").locator("td").all_inner_texts()
    assert cells[2] == "polling" and cells[3] != "never"
    journey.check("environment-healthy-target")


def test_the_whole_journey_through_the_portal(browser: Browser, appliance: Appliance) -> None:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    journey = Journey(context.new_page(), appliance.secret, prefix="journey")
    page, origin = journey.page, appliance.origin
    page.goto(origin + "/environments")
    assert page.url.endswith("/signin?next=/environments")
    journey.check("sign-in")
    sign_in(page, origin, appliance.password, "/environments")
    journey.check("environments-empty")

    dev_url = create_environment(journey, "Dev", "1")
    page.goto(origin + "/environments")
    prod_url = create_environment(journey, "Prod", "2")
    page.goto(origin + "/environments")
    assert page.locator("table.listing tbody th").all_inner_texts() == ["Dev", "Prod"]
    journey.check("environments")

    page.goto(dev_url)
    register_agent(journey, appliance, dev_url)
    # the same agent serves Prod too: its target page's settings
    page.click("text=web-01")
    page.wait_for_url(re.compile(r".*/targets/\w+$"))
    page.fill("#target-environments", "Dev, Prod")
    page.click("main form.stacked button[type=submit]")
    expect(page.locator("dl.facts")).to_contain_text("Dev, Prod")  # saved, page drawn again
    journey.check("target")
    page.goto(prod_url)
    assert page.locator("tr", has_text="web-01").count() == 1
    journey.check("target-in-prod")

    page.click("nav[aria-label=Main] >> text=Projects")
    page.fill("#f-name", "Shop")
    page.click("text=Create project")
    page.wait_for_url(re.compile(r".*/projects/prj_\w+$"))
    project = page.url
    journey.check("project")

    page.click("nav[aria-label=Project] >> text=Process")
    fields = {"#f-name": "Web", "#f-roles": "web", "#f-prop-package": "shop"}
    add_step(journey, project, "deploy-package", fields, 1)
    fields = {"#f-name": "Approve", "#f-prop-instructions": "Check the shop, then approve."}
    add_step(journey, project, "manual-intervention", fields, 2)
    assert page.locator("table.process tbody th").all_inner_texts() == ["Web", "Approve"]
    journey.check("process")

    page.click("nav[aria-label=Project] >> text=Variables")
    page.fill("#f-name", "Port")
    page.fill("#f-value", "8080")
    page.click("#add-variable")
    page.wait_for_url(project + "/variables")
    page.click("text=Add a sensitive variable instead")
    page.wait_for_url(project + "/variables?sensitive=1")
    page.fill("#f-name", "Db.Password")
    page.fill("#f-value", appliance.secret)
    page.click("button:has-text('Add sensitive variable')")
    page.wait_for_url(project + "/variables")
    table = page.locator("table.list tbody").inner_text()
    assert "8080" in table and re.search(r"Db\.Password[\s\S]*sensitive\s+set", table)
    journey.check("variables")

    package = appliance.agent_home.parent / "shop.1.0.0.zip"
    package.write_bytes(zip_bytes({"index.html": b"<h1>shop</h1>"}))
    page.click("nav[aria-label=Main] >> text=Packages")
    page.set_input_files("#file", str(package))
    page.click("#upload-form button[type=submit]")
    page.wait_for_url("**/packages?uploaded=shop%201.0.0")
    journey.check("packages")

    release = create_release(page, project, "1.0.0", journey)
    assert "shop 1.0.0 for step Web" in page.inner_text("main")
    assert page.locator("button:has-text('Promote to Prod')").is_disabled()
    journey.check("release")

    # the dashboard, open in a second tab, follows the deployment without a reload
    board = context.new_page()
    board_journey = Journey(board, appliance.secret, prefix="journey-board")
    board.goto(origin + "/")
    board.evaluate("window.notReloaded = true")
    project_id = project.rsplit("/", 1)[1]
    dev_cell = f'td[data-cell="{project_id}:{dev_url.rsplit("/", 1)[1]}"]'
    prod_cell = f'td[data-cell="{project_id}:{prod_url.rsplit("/", 1)[1]}"]'

    deploy(page, "Deploy to Dev")
    board.wait_for_selector(f"{dev_cell}.state-executing", timeout=60_000)
    log_shows(page, "Step 'Web'")
    page.wait_for_selector("form.answer textarea", timeout=90_000)  # in place, by htmx
    assert page.locator("#log-lines li.step-start").count() >= 1
    journey.check("task-intervention")
    # a second tab on the task page follows what the approval makes happen, never reloaded
    live = Journey(context.new_page(), appliance.secret, prefix="journey-live")
    live.page.goto(page.url)
    live.page.evaluate("window.notReloaded = true")
    approve(page, "shop checked in the browser")  # the answer is a form post: a new page
    assert "approve</strong> by admin: shop checked in the browser" in page.content()
    journey.check("task-done")
    log_shows(live.page, "Deployed release 1.0.0 to Dev")  # written after the approval
    live.page.wait_for_selector("#task-state.state-success", timeout=60_000)
    assert live.page.evaluate("window.notReloaded") is True
    assert live.page.evaluate(NAVIGATIONS) == 1
    live.check("task-followed")
    live.page.close()

    board.wait_for_selector(f"{dev_cell}.state-success", timeout=60_000)
    assert board.evaluate("window.notReloaded") is True and board.evaluate(NAVIGATIONS) == 1
    board_journey.check("dashboard-green")

    page.goto(release)
    promote = page.locator("button:has-text('Promote to Prod')")
    assert promote.is_enabled()
    journey.check("release-promotable")
    deploy(page, "Promote to Prod")
    approve(page, "promoted to Prod")
    log_shows(page, "Deployed release 1.0.0 to Prod")
    journey.check("task-prod-done")
    board.wait_for_selector(f"{prod_cell}.state-success", timeout=60_000)
    assert board.evaluate("window.notReloaded") is True
    board_journey.check("dashboard-both-green")
    page.goto(origin + "/")
    journey.check("dashboard")
    print("axe's moderate and minor findings per page:", journey.minor)
    appliance.paths.extend(journey.paths + board_journey.paths)
    context.close()


def test_the_journeys_pages_over_http3(chromium: Path, appliance: Appliance) -> None:
    """Forced QUIC to the appliance, its certificate trusted by its key: every page of the
    journey, its assets, the htmx refreshes and both live streams (the task log, the dashboard)
    arrive over h3; an answer over HTTP/2 fails the test."""
    assert appliance.paths, "the journey (the test above) makes the pages this one loads"
    args = quic_args(appliance.origin.rsplit(":", 1)[1], appliance.cert_file)
    origin = appliance.origin
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=args)
        context = launched.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        watched = Watched(page, appliance.secret)
        answers = protocols_seen(context, page)
        page.goto(origin + "/signin?next=/")
        assert page.evaluate(NAVIGATION_PROTOCOL) == "h3"
        assets = dict(page.evaluate(FETCHED_PROTOCOLS))
        assert len(assets) >= 2 and set(assets.values()) == {"h3"}, assets  # fetched fresh
        sign_in(page, origin, appliance.password, "/")
        for path in appliance.paths:
            page.goto(origin + path)
            assert page.evaluate(NAVIGATION_PROTOCOL) == "h3", path
            fetched = dict(page.evaluate(FETCHED_PROTOCOLS))
            assert set(fetched.values()) <= {"h3"}, (path, fetched)
            assert appliance.secret not in page.content()

        # live over h3: a second release deployed with the buttons, followed on both pages
        board = context.new_page()
        board_answers = protocols_seen(context, board)
        board.goto(origin + "/")
        board.evaluate("window.notReloaded = true")
        project = origin + next(p for p in appliance.paths if re.fullmatch(r"/projects/\w+", p))
        create_release(page, project, "1.0.1", None)
        deploy(page, "Deploy to Dev")
        assert page.evaluate(NAVIGATION_PROTOCOL) == "h3"
        log_shows(page, "Step 'Web'")
        page.wait_for_selector("form.answer textarea", timeout=90_000)
        live = context.new_page()  # follows what the approval makes happen
        live_answers = protocols_seen(context, live)
        live.goto(page.url)
        approve(page, "approved over h3")
        log_shows(live, "Deployed release 1.0.1 to Dev")
        live.wait_for_selector("#task-state.state-success", timeout=60_000)
        board.wait_for_selector('td.state-success a.release:text-is("1.0.1")', timeout=60_000)
        assert board.evaluate("window.notReloaded") is True
        fetched = dict(live.evaluate(FETCHED_PROTOCOLS))
        assert any(name.endswith("/progress") for name in fetched), fetched  # after the end
        assert set(fetched.values()) == {"h3"}, fetched
        seen = {**answers, **live_answers, **board_answers}
        streams = {
            url: protocol
            for url, protocol in seen.items()
            if "/log/stream" in url or "/dashboard/events" in url
        }
        assert any("/log/stream" in url for url in streams), streams
        assert any("/dashboard/events" in url for url in streams), streams
        assert set(seen.values()) == {"h3"}, seen
        watched.check("journey-h3-task")
        board.screenshot(path=screenshot_path("journey-h3-dashboard"))
        launched.close()


def protocols_seen(context: BrowserContext, page: Page) -> dict[str, str]:
    """Every response the page receives, by URL, with the protocol chromium's network stack
    reports (DevTools' ``Network.responseReceived``): this sees a live stream while it is still
    open, which the performance timeline only lists once it ends."""
    seen: dict[str, str] = {}
    session = context.new_cdp_session(page)
    session.on(
        "Network.responseReceived",
        lambda event: seen.__setitem__(event["response"]["url"], event["response"]["protocol"]),
    )
    session.send("Network.enable")
    return seen
