"""Steps the portal's browser journeys share: a page checked on every stop (console, CSP, no
secret, axe-core, a screenshot), signing in, and running the add-target page's printed
``octo-agent register`` line for a real agent."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page

from tests.browser.axe import axe_source, serious, violations
from tests.browser.test_portal_browser import Watched
from tests.child_process import clean_env


@dataclass
class Appliance:
    """A ``serve`` process as a journey sees it: where, the admin's password, the sensitive
    value no page may show, and the certificate (its key pins HTTP/3)."""

    origin: str
    password: str
    secret: str
    cert_file: Path


class Journey:
    """A watched page that also runs axe-core on every page it checks; screenshots are
    numbered ``<prefix>-NN-<name>.png`` in the order the journey takes them."""

    def __init__(self, page: Page, secret: str, prefix: str = "proj") -> None:
        self.watched = Watched(page, secret)
        self.page = page
        self.prefix = prefix
        self.axe = axe_source()
        self.count = 0
        self.minor: dict[str, list[str]] = {}
        #: the paths of the pages checked, in order (for a second pass over them)
        self.paths: list[str] = []

    def check(self, name: str) -> None:
        self.count += 1
        self.watched.check(f"{self.prefix}-{self.count:02d}-{name}")
        found = violations(self.page, self.axe)
        assert serious(found) == [], (name, serious(found))
        self.minor[name] = [item["id"] for item in found]
        path = "/" + self.page.url.split("/", 3)[3]
        if path not in self.paths:
            self.paths.append(path)


def add_step(
    journey: Journey, project: str, step_type: str, fields: dict[str, str], n: int
) -> None:
    """Add step ``n`` of ``step_type`` on the process editor of ``project`` (its URL) with the
    form drawn from the type's schema, ``fields`` filled in (selector: text)."""
    page = journey.page
    page.select_option("#new-type", step_type)
    page.click("button:has-text('Add step')")
    page.wait_for_url(f"**/process/steps/new?type={step_type}")
    for selector, text in fields.items():
        page.fill(selector, text)
    journey.check(f"step-form-{step_type}")
    page.click("button:has-text('Add step')")
    page.wait_for_url(f"{project}/process#step-{n}")


def sign_in(page: Page, origin: str, password: str, path: str) -> None:
    """Open ``path``, land on the sign-in form (the deep link kept), sign in as admin."""
    page.goto(origin + path)
    page.fill("#username", "admin")
    page.fill("#password", password)
    page.keyboard.press("Enter")
    page.wait_for_url(origin + path)


def tab_to(page: Page, element_id: str, most: int = 60) -> None:
    """Press Tab until the element with ``element_id`` has the focus (fails after ``most``)."""
    for _ in range(most):
        if page.evaluate("document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id}")


def run_register_line(line: str, home: Path, name: str) -> None:
    """Run the add-target page's ``octo-agent register`` line as printed; only the program
    (this checkout's agent) and the home (a test folder) are changed."""
    program = f"{sys.executable} -m octo_appliance.agent.cli register"
    line = line.replace("octo-agent register", program).replace("/var/lib/octo-agent", str(home))
    done = subprocess.run(
        ["sh", "-c", f"{line} --name {name}"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
