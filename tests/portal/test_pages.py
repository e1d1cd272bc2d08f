"""The portal in process: sign in and out by the forms, the dashboard and about pages, errors
as pages, deep links kept through sign-in, and its security headers."""

from __future__ import annotations

import re

import pytest

from octo_appliance import __version__
from octo_appliance.api.auth import CSRF_COOKIE, SESSION_COOKIE
from octo_appliance.db.audit import AuditEvent
from octo_appliance.testing import OctoTestAppliance
from tests.api.helpers import make_user
from tests.api.test_dashboard import deployment, seed
from tests.portal.support import inline_scripts, sign_in


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    return octo_appliance_factory()


def test_a_page_asks_to_sign_in_and_comes_back_to_it(octo: OctoTestAppliance) -> None:
    client = octo.client
    answer = client.get("/about?tab=key", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=/about%3Ftab%3Dkey"
    form = client.get(answer.headers["location"])
    assert 'name="next" value="/about?tab=key"' in form.text
    signed = sign_in(client, "admin", octo.admin_password, "/about?tab=key")
    assert (signed.status_code, signed.headers["location"]) == (303, "/about?tab=key")
    cookies = signed.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session and "Secure" in session and "SameSite=strict" in session
    about = client.get("/about")
    assert about.status_code == 200
    assert __version__ in about.text
    key_file = str(octo.appliance.config.data_path.parent / "data0-key" / "master.key")
    assert key_file in about.text and "Back up the master key" in about.text
    assert about.headers["cache-control"] == "no-store"


def test_sign_in_errors_stand_next_to_their_field_and_keep_the_username(
    octo: OctoTestAppliance,
) -> None:
    empty = sign_in(octo.client, "admin", "")
    assert empty.status_code == 422
    assert re.search(
        r'id="password"[^>]*aria-invalid="true" aria-describedby="password-error"', empty.text
    )
    assert '<p class="field-error" id="password-error">Enter your password.</p>' in empty.text
    assert 'value="admin"' in empty.text
    wrong = sign_in(octo.client, "admin", "not-the-password-7f3a")
    assert wrong.status_code == 401
    assert "Wrong username or password." in wrong.text
    assert 'value="admin"' in wrong.text
    assert "not-the-password-7f3a" not in wrong.text
    assert re.search(r'id="password"[^>]*autofocus', wrong.text)  # the keyboard starts there
    assert not re.search(r'id="username"[^>]*autofocus', wrong.text)
    assert SESSION_COOKIE not in octo.client.cookies


def test_after_sign_in_only_a_local_path(octo: OctoTestAppliance) -> None:
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        answer = sign_in(octo.client, "admin", octo.admin_password, hostile)
        assert answer.headers["location"] == "/"


def test_a_form_from_another_site_is_refused(octo: OctoTestAppliance) -> None:
    form = {"username": "admin", "password": octo.admin_password}
    answer = octo.client.post("/signin", data=form, headers={"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert SESSION_COOKIE not in octo.client.cookies


def test_sign_out_needs_the_csrf_token_then_ends_the_session(octo: OctoTestAppliance) -> None:
    client = octo.client
    sign_in(client, "admin", octo.admin_password)
    page = client.get("/")
    token = client.cookies[CSRF_COOKIE]
    assert f'name="csrf_token" value="{token}"' in page.text
    forged = client.post("/signout", data={"csrf_token": "guess"}, follow_redirects=False)
    assert forged.status_code == 403
    assert "CSRF" in forged.text
    assert client.get("/", follow_redirects=False).status_code == 200
    out = client.post("/signout", data={"csrf_token": token}, follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/signin")
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, "gone")  # even a replayed cookie no longer works
    assert client.get("/", follow_redirects=False).status_code == 303


def test_dashboard_draws_the_latest_deployment_per_cell(octo: OctoTestAppliance) -> None:
    ids = seed(octo.api)
    deployment(ids["Shop"], ids["Dev"], "1.0.0", "success", 50)
    deployment(ids["Shop"], ids["Dev"], "1.1.0", "failed", 40)
    deployment(ids["Blog"], ids["Prod"], "0.0.1", "queued", 5, task_state="executing")
    sign_in(octo.client, "admin", octo.admin_password)
    html = octo.client.get("/").text
    headers = re.findall(r'<th scope="col">([^<]+)</th>', html)
    assert headers == ["Project", "Dev", "Prod"]
    rows = re.findall(r'<th scope="row">([^<]+)</th>', html)
    assert rows == ["Blog", "Idle", "Shop"]
    cells = re.findall(
        r'<td class="cell state-(\w+)" data-cell="\w+:\w+">\s*<a class="release" href="/tasks/'
        r'\w+">([^<]+)<',
        html,
    )
    assert cells == [("executing", "0.0.1"), ("failed", "1.1.0")]
    assert html.count('<td class="cell empty"') == 4


def test_dashboard_shows_only_what_the_viewer_may_view(octo: OctoTestAppliance) -> None:
    ids = seed(octo.api)
    deployment(ids["Shop"], ids["Dev"], "1.0.0", "success", 50)
    deployment(ids["Blog"], ids["Dev"], "2.0.0", "success", 50)
    make_user(octo, "vera", "viewer", projects=[ids["Shop"]], password="vera-password-1")
    sign_in(octo.client, "vera", "vera-password-1")
    html = octo.client.get("/").text
    assert re.findall(r'<th scope="row">([^<]+)</th>', html) == ["Shop"]
    assert "2.0.0" not in html


def test_a_user_without_project_view_gets_a_403_page(octo: OctoTestAppliance) -> None:
    make_user(octo, "nobody", password="nobody-password-1")
    sign_in(octo.client, "nobody", "nobody-password-1")
    answer = octo.client.get("/")
    assert answer.status_code == 403
    assert "project.view" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


def test_unknown_paths_get_a_page_and_the_api_keeps_json(octo: OctoTestAppliance) -> None:
    page = octo.client.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert '<main id="main"' in page.text
    api = octo.client.get("/api/v1/no-such-thing")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/signin", "/", "/about", "/nowhere"])
def test_every_page_has_the_csp_landmarks_and_no_inline_script(
    octo: OctoTestAppliance, path: str
) -> None:
    if path != "/signin":
        sign_in(octo.client, "admin", octo.admin_password)
    answer = octo.client.get(path)
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert inline_scripts(answer.text) == []
    html = answer.text
    assert '<a class="skip-link" href="#main">' in html
    assert html.index("skip-link") < html.index("<header") < html.index('<main id="main"')
    assert ('<nav aria-label="Main">' in html) == (path != "/signin")


def test_a_throttled_sign_in_says_how_long_to_wait(octo: OctoTestAppliance) -> None:
    octo.appliance.login_throttle.clock = lambda: 1000.0  # no delay runs out during the test
    free = octo.appliance.config.login_free_failures
    statuses = [sign_in(octo.client, "admin", "wrong-password").status_code for _ in range(free)]
    assert statuses == [401] * free
    throttled = sign_in(octo.client, "admin", octo.admin_password)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    wait = throttled.headers["retry-after"]
    assert f"Too many failed sign-ins for this user or from this address: wait {wait} s" in (
        throttled.text
    )
    assert 'value="admin"' in throttled.text
    failed = AuditEvent.select().where(AuditEvent.action == "login-failed").count()
    assert failed == free  # the portal's failures are audited like the API's
