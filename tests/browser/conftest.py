"""A real appliance process and Debian's chromium driven by Playwright, for the portal tests.

Playwright's own browser download cannot work on these machines, so the tests launch the
system's ``/usr/bin/chromium`` (``build/test.sh`` installs it), with ``--no-sandbox`` as root.
Screenshots land in ``tests/screenshots/`` (git ignores it) for a reviewer to look at.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.axe import assert_accessible, axe_source
from tests.serve_process import ServeProcess

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"


@dataclass
class PortalServer:
    server: ServeProcess
    password: str
    #: a sensitive variable's value, which no page may ever show
    secret: str

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"


#: the protocol the page itself came over (``h3`` when forced to QUIC)
NAVIGATION_PROTOCOL = 'performance.getEntriesByType("navigation")[0].nextHopProtocol'


def chromium_args(*extra: str) -> list[str]:
    return (["--no-sandbox"] if os.geteuid() == 0 else []) + list(extra)


def quic_args(port: int | str, cert_file: Path) -> list[str]:
    """Chromium forced to HTTP/3 on the appliance's port, its certificate trusted by its key."""
    return chromium_args(
        f"--origin-to-force-quic-on=127.0.0.1:{port}",
        f"--ignore-certificate-errors-spki-list={spki_hash(cert_file)}",
    )


def spki_hash(cert_file: Path) -> str:
    """The base64 SHA-256 of the certificate's public key, as chromium's pin flag wants it."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: build/test.sh installs it with apt-get")
        pytest.skip(f"{CHROMIUM} is missing: run build/test.sh (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path) -> Iterator[Browser]:
    """Debian's chromium, launched by Playwright for one test."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=chromium_args())
        yield launched
        launched.close()


def seed(server: ServeProcess, password: str, secret: str) -> None:
    """An environment, a project with a sensitive variable, and a finished deployment."""
    with server.http2_client() as client:
        login = client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        headers = {"X-CSRF-Token": login.json()["csrf_token"]}

        def post(path: str, body: dict[str, object], method: str = "POST") -> dict[str, object]:
            answer = client.request(method, "/api/v1" + path, json=body, headers=headers)
            assert answer.status_code in (200, 201), answer.text
            return dict(answer.json())

        env = post("/environments", {"name": "Dev"})
        post("/environments", {"name": "Prod", "sort_order": 2})
        project = post("/projects", {"name": "Shop"})
        variable = {"name": "Db.Password", "value": secret, "sensitive": True}
        post(f"/projects/{project['id']}/variables", {"variables": [variable]}, "PUT")
        release = post(f"/projects/{project['id']}/releases", {"version": "1.0.0"})
        post("/deployments", {"release": release["id"], "environment": env["id"]})


@pytest.fixture(scope="module")
def portal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalServer]:
    password, secret = "admin-" + secrets.token_hex(8), "canary-" + secrets.token_hex(12)
    data_dir = tmp_path_factory.mktemp("portal") / "data"
    with ServeProcess(data_dir, env={"OCTO_ADMIN_PASSWORD": password}) as server:
        seed(server, password, secret)
        yield PortalServer(server, password, secret)


@pytest.fixture(scope="session")
def axe() -> Callable[[Any, str], None]:
    """``axe(page, name)``: fail on the page's serious or critical accessibility violations
    (axe-core fetched from npm once per run; see ``tests/browser/axe.py``)."""
    source = axe_source()

    def check(page: Any, name: str) -> None:
        assert_accessible(page, name, source)

    return check


def open_page(browser: Browser) -> Page:
    """A page in a fresh context that accepts the appliance's self-signed certificate (close
    it with ``page.context.close()``)."""
    return browser.new_context(ignore_https_errors=True).new_page()
