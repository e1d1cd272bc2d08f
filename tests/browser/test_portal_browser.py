"""The portal in Debian's chromium against a real appliance process: sign in (a deep link kept
through it), the dashboard and about pages, sign out; the CSP is sent and nothing violates it,
no page carries inline script or the sensitive value; the same pages over HTTP/3."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Response, sync_playwright

from tests.browser.conftest import (
    NAVIGATION_PROTOCOL,
    PortalServer,
    open_page,
    quic_args,
    screenshot_path,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NO_INLINE_SCRIPT = "[...document.scripts].filter((s) => !s.src || s.text.trim()).length"
ASSET_PROTOCOLS = 'performance.getEntriesByType("resource").map((e) => e.nextHopProtocol)'


class Watched:
    """A page whose console and requests are kept: a CSP violation, a script error or an asset
    that fails to load shows up there (a page's own 4xx, e.g. a refused sign-in, is meant)."""

    def __init__(self, page: Page, secret: str) -> None:
        self.page, self.secret, self.problems = page, secret, list[str]()
        page.on("console", lambda message: self._console(message.type, message.text))
        page.on("pageerror", lambda error: self.problems.append(str(error)))
        page.on("response", self._response)

    def _console(self, kind: str, text: str) -> None:
        if text.startswith("Failed to load resource"):
            return  # the response listener tells which, and whether it was meant
        if kind == "error" or "Content Security Policy" in text:
            self.problems.append(text)

    def _response(self, response: Response) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            self.problems.append(f"{response.status} {response.url}")

    def check(self, name: str) -> None:
        """What every page must be, then its screenshot."""
        page = self.page
        assert page.evaluate(NO_INLINE_SCRIPT) == 0
        assert self.secret not in page.content()
        assert page.locator("header").count() == 1 and page.locator("main#main").count() == 1
        assert page.evaluate("typeof htmx") == "object"  # the vendored script ran under the CSP
        page.screenshot(path=screenshot_path(name), full_page=True)
        assert self.problems == []


def test_sign_in_dashboard_about_and_sign_out(
    browser: Browser, portal_server: PortalServer
) -> None:
    watched = Watched(open_page(browser), portal_server.secret)
    page = watched.page
    first = page.goto(portal_server.origin + "/about")
    assert first is not None and page.url.endswith("/signin?next=/about")
    csp = first.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    assert page.evaluate("document.activeElement.id") == "username"  # autofocus
    watched.check("01-sign-in")

    page.fill("#username", "admin")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    assert page.locator("#password-error").inner_text() == "Wrong username or password."
    assert page.input_value("#username") == "admin"
    assert page.input_value("#password") == ""
    watched.check("02-sign-in-refused")

    page.fill("#password", portal_server.password)
    page.keyboard.press("Enter")
    page.wait_for_url("**/about")
    assert "Back up the master key" in page.inner_text("main")
    watched.check("03-about")

    page.click("nav >> text=Dashboard")
    page.wait_for_url(portal_server.origin + "/")
    table = page.locator("table.dashboard")
    assert table.locator("thead th").all_inner_texts() == ["Project", "Dev", "Prod"]
    assert table.locator("tbody th").all_inner_texts() == ["Shop"]
    assert "1.0.0" in table.locator("td").first.inner_text()
    page.keyboard.press("Tab")  # the keyboard's first stop is the skip link, which jumps to main
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    watched.check("04-dashboard")

    page.click("text=Sign out")
    page.wait_for_url("**/signin")
    page.goto(portal_server.origin + "/")
    assert page.url.endswith("/signin")
    watched.check("05-signed-out")
    watched.page.context.close()


def test_the_pages_load_over_http3(chromium: Path, portal_server: PortalServer) -> None:
    """Forced QUIC to the appliance's port, its certificate trusted by its key: the page and
    its assets must arrive over h3; a fallback to HTTP/2 fails the test."""
    server = portal_server.server
    args = quic_args(server.port, server.cert_file)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=args)
        page = browser.new_page()
        watched = Watched(page, portal_server.secret)
        page.goto(portal_server.origin + "/signin")
        assert page.evaluate(NAVIGATION_PROTOCOL) == "h3"
        assets = page.evaluate(ASSET_PROTOCOLS)  # the stylesheet and htmx at least, fetched fresh
        assert len(assets) >= 2 and set(assets) == {"h3"}
        page.fill("#username", "admin")
        page.fill("#password", portal_server.password)
        page.click("button[type=submit]")
        page.wait_for_url(portal_server.origin + "/")
        assert page.evaluate(NAVIGATION_PROTOCOL) == "h3"
        page.goto(portal_server.origin + "/about")
        assert page.evaluate(NAVIGATION_PROTOCOL) == "h3"
        watched.check("06-about-over-h3")
        browser.close()
