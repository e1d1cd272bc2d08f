"""The task pages in Debian's chromium against a real appliance and a real agent: a deployment
started from the CLI, its log followed live on the task page, its manual intervention
approved there, the dashboard cell turning running then green without a reload; a 100,000-line
log that opens and follows with a bounded DOM; a package uploaded with the form's progress bar;
the script console and the tasks list. A screenshot of each page goes to tests/screenshots/."""

from __future__ import annotations

import io
import json
import os
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from octo_appliance.portal.task_log import WINDOW
from tests.browser.conftest import chromium_args, screenshot_path, spki_hash
from tests.cli_support import Appliance
from tests.fleet import Fleet, FleetAgent

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: the task page keeps at most this many rows (static/task-log.js MAX_ROWS)
MAX_ROWS = 2000
ROWS = "document.querySelectorAll('#log-lines li.line').length"
LAST_SEQ = "Number([...document.querySelectorAll('#log-lines li.line')].pop()?.dataset.seq || 0)"
NAVIGATIONS = 'performance.getEntriesByType("navigation").length'
NAVIGATION_PROTOCOL = 'performance.getEntriesByType("navigation")[0].nextHopProtocol'
RESOURCE_PROTOCOLS = (
    "Object.fromEntries(performance.getEntriesByType('resource')"
    ".map((e) => [new URL(e.name).pathname, e.nextHopProtocol]))"
)
SLOW_SCRIPT = 'for i in $(seq 1 30); do echo "tick $i of the web step"; sleep 0.2; done'
PROCESS = [
    {
        "name": "Warm up",
        "type": "run-script",
        "roles": ["web"],
        "properties": {"syntax": "bash", "body": SLOW_SCRIPT},
    },
    {
        "name": "Sign off",
        "type": "manual-intervention",
        "properties": {"instructions": "Check the shop, then approve."},
    },
]


class World:
    def __init__(self, fleet: Fleet, password: str, agent: FleetAgent) -> None:
        self.fleet, self.password, self.agent = fleet, password, agent

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.fleet.server.port}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    password = "admin-" + secrets.token_hex(8)
    root = tmp_path_factory.mktemp("portal-tasks")
    fleet = Fleet(root, environments=("Dev", "Prod"), serve_env={"OCTO_ADMIN_PASSWORD": password})
    with fleet:
        agent = fleet.register("web-1", "listening")
        fleet.start_agents([agent])
        fleet.call("POST", "/projects", 201, json={"name": "Shop"})
        fleet.call("PUT", "/projects/Shop/process", json={"steps": PROCESS})
        yield World(fleet, password, agent)


def signed_in(browser: Browser, world: World) -> tuple[BrowserContext, Page, list[str]]:
    """A new browser context signed in as admin, its first page, and that page's script
    errors (filled as they happen)."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = no_script_errors(page)
    page.goto(world.origin + "/signin")
    page.fill("#username", "admin")
    page.fill("#password", world.password)
    page.click("button[type=submit]")
    page.wait_for_url(world.origin + "/")
    return context, page, problems


def no_script_errors(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    return problems


def test_a_deployment_followed_live_approved_and_green_on_the_dashboard(
    browser: Browser, world: World
) -> None:
    context, board, board_problems = signed_in(browser, world)
    board.goto(world.origin + "/")
    board.evaluate("window.notReloaded = true")
    release = world.fleet.call("POST", "/projects/Shop/releases", 201, json={"version": "1.0.0"})
    env = world.fleet.call("GET", "/environments?name=Dev")["items"][0]
    project = world.fleet.call("GET", "/projects/Shop")
    # started from the CLI, as an operator would: the open dashboard learns it from the database
    started = Appliance(world.fleet.server, world.fleet.api_key).cli(
        "deploy",
        "--project",
        "Shop",
        "--release",
        release["version"],
        "--environment",
        "Dev",
        "--json",
    )
    assert started.returncode == 0, started.stderr
    task_id = json.loads(started.stdout)["task_id"]
    cell = f'td[data-cell="{project["id"]}:{env["id"]}"]'
    board.wait_for_selector(f"{cell}.state-executing", timeout=60_000)
    assert board.evaluate("window.notReloaded") is True and board.evaluate(NAVIGATIONS) == 1
    board.screenshot(path=screenshot_path("tasks-01-dashboard-running"), full_page=True)

    page = context.new_page()
    problems = no_script_errors(page)
    page.goto(f"{world.origin}/tasks/{task_id}")
    page.evaluate("window.notReloaded = true")
    first = page.evaluate(LAST_SEQ)
    # the lines arrive through the SSE stream and are appended: no reload
    page.wait_for_function(
        "() => [...document.querySelectorAll('#log-lines .msg')]"
        ".some(m => m.textContent === 'tick 30 of the web step')",
        timeout=90_000,
    )
    assert page.evaluate(LAST_SEQ) > first
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#log-lines li.step-start").count() >= 1  # "Step 'Warm up' ... started."
    web_rows = page.locator(f'#log-lines li.line[data-target="{world.agent.target_id}"]')
    assert web_rows.count() >= 30
    assert page.get_attribute("#follow", "aria-pressed") == "true"
    page.screenshot(path=screenshot_path("tasks-02-task-following"), full_page=True)

    # the manual intervention appears in place (htmx refreshes the progress part)
    page.wait_for_selector("form.answer textarea", timeout=60_000)
    page.select_option("#log-target", world.agent.target_id)  # narrowing the log: no error
    assert page.locator("#log-lines li.line:not([hidden])").count() == web_rows.count()
    page.select_option("#log-target", "")
    page.screenshot(path=screenshot_path("tasks-03-intervention"), full_page=True)
    page.fill("form.answer textarea", "shop checked in the browser")
    page.click("form.answer button[value=approve]")
    page.wait_for_selector("#task-state.state-success", timeout=60_000)
    assert "approve</strong> by admin: shop checked in the browser" in page.content()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#log-lines .msg')]"
        ".some(m => m.textContent.includes('Deployed release 1.0.0 to Dev'))",
        timeout=30_000,
    )
    page.screenshot(path=screenshot_path("tasks-04-task-done"), full_page=True)

    board.wait_for_selector(f"{cell}.state-success", timeout=60_000)
    assert board.evaluate("window.notReloaded") is True and board.evaluate(NAVIGATIONS) == 1
    assert board.inner_text("#dashboard-news").endswith("success")
    board.screenshot(path=screenshot_path("tasks-05-dashboard-green"), full_page=True)

    raw = page.request.get(f"{world.origin}/tasks/{task_id}/log.txt")
    assert raw.status == 200 and "tick 30 of the web step" in raw.text()
    assert problems == [] and board_problems == []
    context.close()


def test_a_100000_line_log_opens_and_follows_with_a_bounded_page(
    browser: Browser, world: World
) -> None:
    lines = 100_000
    task_id = world.fleet.run_script(f'seq -f "row %g of the long log" 1 {lines}', roles=["web"])
    context, page, problems = signed_in(browser, world)
    page.goto(f"{world.origin}/tasks/{task_id}")
    page.evaluate("window.notReloaded = true")
    # follow mode appends as the script writes; the page never holds more than a window
    page.wait_for_function(
        "() => [...document.querySelectorAll('#log-lines .msg')]"
        f".some(m => m.textContent === 'row {lines} of the long log')",
        timeout=300_000,
        polling=1000,
    )
    assert page.evaluate(ROWS) <= MAX_ROWS
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#log-lines li.earlier a").count() == 1
    page.screenshot(path=screenshot_path("tasks-06-long-log-followed"))
    task = world.fleet.wait_task(task_id, timeout=120)
    assert task["state"] == "success"
    total = world.fleet.call("GET", f"/tasks/{task_id}/log?take=1")["total"]
    assert total > lines

    # opened when finished: the last WINDOW lines, earlier ones a click away
    page.goto(f"{world.origin}/tasks/{task_id}")
    assert page.evaluate(ROWS) == WINDOW
    assert page.evaluate(LAST_SEQ) == total
    page.click("#log-lines li.earlier a")
    page.wait_for_function(f"() => {ROWS} === {2 * WINDOW}")
    assert page.get_attribute("#follow", "aria-pressed") == "false"  # reading back pauses
    page.screenshot(path=screenshot_path("tasks-07-long-log-earlier"))
    assert problems == []
    context.close()


def _package(name: str, mib: int) -> Path:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"portal-{secrets.token_hex(4)}" / name
    path.parent.mkdir(parents=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("payload.bin", os.urandom(mib * 1024 * 1024))
    path.write_bytes(buffer.getvalue())
    return path


def test_a_package_uploaded_with_the_form_shows_its_progress(
    browser: Browser, world: World
) -> None:
    context, page, problems = signed_in(browser, world)
    seen: list[str] = []
    page.expose_function("reportProgress", lambda value: seen.append(value))
    page.goto(world.origin + "/packages")
    assert page.is_hidden("#upload-progress-line")
    page.evaluate(
        """() => {
        const bar = document.getElementById('upload-progress');
        new MutationObserver(() => window.reportProgress(String(bar.value)))
          .observe(bar, {attributes: true});
        const line = document.getElementById('upload-progress-line');
        new MutationObserver(() => { if (!line.hidden) window.reportProgress('shown'); })
          .observe(line, {attributes: true});
    }"""
    )
    page.screenshot(path=screenshot_path("tasks-08-packages"), full_page=True)
    package = _package("Shop.3.1.0.zip", 24)
    page.set_input_files("#file", str(package))
    page.click("#upload-form button[type=submit]")
    page.wait_for_url("**/packages?uploaded=Shop%203.1.0")
    assert "shown" in seen
    shares = [float(v) for v in seen if v != "shown"]
    assert shares and max(shares) == 100 and all(0 <= v <= 100 for v in shares)
    assert "Uploaded Shop 3.1.0." in page.inner_text("main")
    assert page.locator('a[href="/api/v1/packages/Shop/3.1.0/download"]').count() == 1
    page.screenshot(path=screenshot_path("tasks-09-package-uploaded"), full_page=True)

    page.set_input_files("#file", str(package))  # the same version again: 409 by the field
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#file-error:not([hidden])")
    assert "already" in page.inner_text("#file-error")
    assert page.get_attribute("#file", "aria-invalid") == "true"
    assert problems == []
    context.close()


def test_the_script_console_opens_its_task_and_the_list_finds_it(
    browser: Browser, world: World
) -> None:
    context, page, problems = signed_in(browser, world)
    page.goto(world.origin + "/scripts")
    page.select_option("#environment", "Dev")
    page.fill("#roles", "web")
    page.fill("#window", "1")
    page.fill("#body", "echo console says #{Octo.Machine.Name}")
    page.screenshot(path=screenshot_path("tasks-10-script-console"), full_page=True)
    page.click("main form button[type=submit]")
    page.wait_for_url(world.origin + "/tasks/task_*")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#log-lines .msg')]"
        ".some(m => m.textContent === 'console says web-1')",
        timeout=60_000,
    )
    page.wait_for_selector("#task-state.state-success", timeout=60_000)
    assert "at most 1 target(s) at once" in page.inner_text("#log-lines")
    page.goto(world.origin + "/tasks?kind=script&state=success")
    assert page.locator("table.listing tbody tr").count() >= 1
    page.screenshot(path=screenshot_path("tasks-11-tasks-list"), full_page=True)
    assert problems == []
    context.close()


def test_the_live_parts_work_over_http3(chromium: Path, world: World) -> None:
    """Forced QUIC (a fallback to HTTP/2 fails): the dashboard cell and the task log follow a
    deployment live over h3, the progress refresh (htmx) and the SSE streams included."""
    server = world.fleet.server
    args = chromium_args(
        f"--origin-to-force-quic-on=127.0.0.1:{server.port}",
        f"--ignore-certificate-errors-spki-list={spki_hash(server.cert_file)}",
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=args)
        context, board, problems = signed_in(browser, world)
        assert board.evaluate(NAVIGATION_PROTOCOL) == "h3"
        board.evaluate("window.notReloaded = true")
        release = world.fleet.call("POST", "/projects/Shop/releases", 201, json={})
        task_id = world.fleet.call(
            "POST", "/deployments", 201, json={"release": release["id"], "environment": "Dev"}
        )["task_id"]
        page = context.new_page()
        page.goto(f"{world.origin}/tasks/{task_id}")
        assert page.evaluate(NAVIGATION_PROTOCOL) == "h3"
        page.wait_for_function(
            "() => [...document.querySelectorAll('#log-lines .msg')]"
            ".some(m => m.textContent === 'tick 30 of the web step')",
            timeout=90_000,
        )
        page.wait_for_selector("form.answer textarea", timeout=60_000)
        page.click("form.answer button[value=approve]")
        page.wait_for_selector("#task-state.state-success", timeout=60_000)
        version = release["version"]
        board.wait_for_selector(f'td.state-success a.release:text-is("{version}")', timeout=60_000)
        assert board.evaluate("window.notReloaded") is True
        protocols = page.evaluate(RESOURCE_PROTOCOLS)
        assert protocols and set(protocols.values()) == {"h3"}, protocols
        assert any("/progress" in name for name in protocols)  # htmx's refresh, over h3
        assert problems == []
        browser.close()
