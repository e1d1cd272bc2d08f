"""The project pages in Debian's chromium against a real appliance process: create a project,
add a ``deploy-package`` and a manual-intervention step through the forms drawn from their
schemas (a refused one first: the error stands next to its field), add a plain and a
sensitive variable, create a release, press deploy and land on the task page's path.

Every page: no inline script, no CSP violation or script error, the sensitive value nowhere,
axe-core (from npm) without serious or critical violations, and a screenshot in
``tests/screenshots/`` (``proj-NN-*.png``)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.conftest import NAVIGATION_PROTOCOL, open_page, quic_args
from tests.browser.journey_support import Appliance, Journey, add_step, sign_in, tab_to
from tests.packages_support import zip_bytes
from tests.serve_process import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """Two environments and a package in the feed, made through the API; the rest is the
    journey's, through the portal."""
    password, secret = "admin-" + secrets.token_hex(8), "canary-" + secrets.token_hex(12)
    data_dir = tmp_path_factory.mktemp("journey") / "data"
    with ServeProcess(data_dir, env={"OCTO_ADMIN_PASSWORD": password}) as server:
        with server.http2_client() as client:
            login = client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": password}
            )
            headers = {"X-CSRF-Token": login.json()["csrf_token"]}
            for body in ({"name": "Dev"}, {"name": "Prod", "sort_order": 2}):
                made = client.post("/api/v1/environments", json=body, headers=headers)
                assert made.status_code == 201, made.text
            package = zip_bytes({"index.html": b"<h1>shop</h1>"})
            files = {"file": ("shop.1.0.0.zip", package)}
            uploaded = client.post("/api/v1/packages", files=files, headers=headers)
            assert uploaded.status_code == 201, uploaded.text
        origin = f"https://127.0.0.1:{server.port}"
        yield Appliance(origin, password, secret, server.cert_file)


def test_create_a_project_its_process_variables_release_and_deploy(
    browser: Browser, appliance: Appliance
) -> None:
    journey = Journey(open_page(browser), appliance.secret)
    page = journey.page
    sign_in(page, appliance.origin, appliance.password, "/projects")
    assert page.locator("nav[aria-label=Main] a[aria-current=page]").inner_text() == "Projects"
    journey.check("projects-empty")

    page.fill("#f-name", "Shop")
    page.fill("#f-description", "The web shop")
    page.click("text=Create project")
    page.wait_for_url(re.compile(r".*/projects/prj_\w+$"))
    project = page.url
    assert page.locator("h1").inner_text() == "Shop"
    journey.check("overview-new")

    page.click("nav[aria-label=Project] >> text=Process")
    page.wait_for_url(project + "/process")
    page.select_option("#new-type", "deploy-package")
    page.click("button:has-text('Add step')")
    page.wait_for_url("**/process/steps/new?type=deploy-package")
    assert page.locator("label[for=f-prop-package]").inner_text().startswith("package")
    journey.check("step-form-deploy-package")

    page.fill("#f-name", "Web")
    page.click("button:has-text('Add step')")  # no roles, no package: refused
    assert page.locator("#f-prop-package-error").inner_text() == "is required"
    assert page.get_attribute("#f-prop-package", "aria-invalid") == "true"
    assert "target role" in page.locator("#f-roles-error").inner_text()
    assert page.input_value("#f-name") == "Web"  # what was typed is kept
    journey.check("step-form-refused")

    page.fill("#f-roles", "web")
    page.fill("#f-prop-package", "shop")
    page.click("button:has-text('Add step')")
    page.wait_for_url(project + "/process#step-1")
    fields = {"#f-name": "Approve", "#f-prop-instructions": "Check the shop, then approve."}
    add_step(journey, project, "manual-intervention", fields, 2)
    rows = page.locator("table.process tbody th").all_inner_texts()
    assert rows == ["Web", "Approve"]
    journey.check("process")

    page.click("nav[aria-label=Project] >> text=Variables")
    page.wait_for_url(project + "/variables")
    # the keyboard alone: Tab reaches the form in document order, Enter on the button adds
    tab_to(page, "f-name")
    page.keyboard.type("Port")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-value"
    page.keyboard.type("8080")
    tab_to(page, "add-variable")
    page.keyboard.press("Enter")
    page.wait_for_url(project + "/variables")
    page.click("text=Add a sensitive variable instead")
    page.wait_for_url(project + "/variables?sensitive=1")
    assert page.get_attribute("#f-value", "type") == "password"
    page.fill("#f-name", "Db.Password")
    page.fill("#f-value", appliance.secret)
    page.click("button:has-text('Add sensitive variable')")
    page.wait_for_url(project + "/variables")
    table = page.locator("table.list tbody").inner_text()
    assert "Port" in table and "8080" in table and "Db.Password" in table
    assert re.search(r"sensitive\s+set", table)
    journey.check("variables")

    page.click("nav[aria-label=Main] >> text=Library sets")
    page.wait_for_url("**/library-sets")
    page.fill("#f-name", "Common")
    page.click("button:has-text('Create library set')")
    page.wait_for_url(re.compile(r".*/library-sets/\w+$"))
    page.fill("#f-name", "Region")
    page.fill("#f-value", "eu-west")
    page.click("button:has-text('Add variable')")
    assert "eu-west" in page.locator("table.list tbody").inner_text()
    journey.check("library-set")
    page.goto(project + "/variables")
    page.check("text=Common")
    page.click("button:has-text('Save included sets')")
    page.wait_for_url(project + "/variables#library-sets")
    assert page.locator("#library-sets input[type=checkbox]").is_checked()

    page.click("nav[aria-label=Project] >> text=Releases")
    page.click("text=Create a release")
    page.wait_for_url(project + "/releases/new")
    assert "shop (step Web)" in page.locator("label[for=f-package-0]").inner_text()
    page.fill("#f-version", "1.0.0")
    journey.check("release-new")
    page.click("button:has-text('Create release')")
    page.wait_for_url(project + "/releases/1.0.0")
    assert "shop 1.0.0 for step Web" in page.inner_text("main")
    assert "library:Common" in page.inner_text("main")
    deploy = page.locator("button:has-text('Deploy to Dev')")
    promote = page.locator("button:has-text('Promote to Prod')")
    assert deploy.is_enabled() and promote.is_disabled()
    assert "phase 'Dev' is not complete" in page.locator("p.why").inner_text()
    journey.check("release")

    deploy.click()
    page.wait_for_url(re.compile(r".*/tasks/task_\w+$"))
    assert re.fullmatch(appliance.origin + r"/tasks/task_\w+", page.url)
    task_path = page.url.removeprefix(appliance.origin)
    page.goto(project)
    assert "Dev" in page.locator("table.list tbody").inner_text()
    assert page.locator(f"table.list tbody a[href='{task_path}']").count() == 1
    journey.check("overview-deployed")
    print("axe's moderate and minor findings per page:", journey.minor)
    journey.page.context.close()


def test_the_project_pages_load_over_http3(chromium: Path, appliance: Appliance) -> None:
    """Forced QUIC, the certificate trusted by its key: the project pages arrive over h3
    (after the journey above, so there is a project, a process, variables and a release)."""
    port = appliance.origin.rsplit(":", 1)[1]
    args = quic_args(port, appliance.cert_file)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=args)
        page = launched.new_page()
        page.goto(appliance.origin + "/signin?next=/projects")
        page.fill("#username", "admin")
        page.fill("#password", appliance.password)
        page.click("button[type=submit]")
        page.wait_for_url("**/projects")
        assert page.evaluate(NAVIGATION_PROTOCOL) == "h3"
        page.click("text=Shop")
        project = page.url
        for path in ("", "/process", "/process/steps/1", "/variables", "/releases/1.0.0"):
            page.goto(project + path)
            assert page.evaluate(NAVIGATION_PROTOCOL) == "h3", path
        launched.close()
