"""The project pages' permissions and safety, in process: a viewer sees no edit controls and
a forged post is a 403; a post without the CSRF token is refused; no sensitive value in any
page's HTML; every page has the CSP, the landmarks and no inline script."""

from __future__ import annotations

import re

import pytest

from octo_appliance.testing import OctoTestAppliance
from tests.api.helpers import make_user
from tests.portal.support import inline_scripts, sign_in
from tests.portal.test_projects_pages import post

SECRET = "canary-9b2f41e7c3"
SIGN_OUT_FORM = '<form class="signout" method="post" action="/signout">'


@pytest.fixture
def world(octo_appliance_factory) -> tuple[OctoTestAppliance, dict[str, str]]:  # type: ignore[no-untyped-def]
    octo = octo_appliance_factory()
    api = octo.api
    env = api.post("/environments", json={"name": "Dev"}).json()["id"]
    pid = api.post("/projects", json={"name": "Shop"}).json()["id"]
    library = api.post("/library-variable-sets", json={"name": "Common"}).json()["id"]
    secret = {"name": "Key", "value": SECRET, "sensitive": True}
    api.put(f"/library-variable-sets/{library}/variables", json={"variables": [secret]})
    api.put(f"/projects/{pid}", json={"library_sets": [library]})
    api.put(f"/projects/{pid}/variables", json={"variables": [secret, {"name": "A", "value": "1"}]})
    step = {"name": "Approve", "type": "manual-intervention", "properties": {"instructions": "x"}}
    api.put(f"/projects/{pid}/process", json={"steps": [step]})
    api.post(f"/projects/{pid}/releases", json={"version": "1.0.0"})
    ids = {"env": env, "project": pid, "library": library}
    ids["var"] = api.get(f"/projects/{pid}/variables").json()["variables"][0]["id"]
    ids["libvar"] = api.get(f"/library-variable-sets/{library}/variables").json()["variables"][0][
        "id"
    ]
    return octo, ids


def pages(ids: dict[str, str]) -> list[str]:
    project = f"/projects/{ids['project']}"
    return [
        "/projects",
        project,
        project + "/process",
        project + "/process/steps/1",
        project + "/variables",
        project + f"/variables/{ids['var']}",
        project + "/releases",
        project + "/releases/1.0.0",
        "/library-sets",
        f"/library-sets/{ids['library']}",
        f"/library-sets/{ids['library']}/variables/{ids['libvar']}",
    ]


def writes(ids: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    project = f"/projects/{ids['project']}"
    var = {"name": "B", "value": "2"}
    step = {"type": "manual-intervention", "name": "X", "prop.instructions": "y", "version": "1"}
    return [
        ("/projects", {"name": "Other"}),
        (project + "/process/steps", step),
        (project + "/process/steps/1", {**step, "name": "Approve"}),
        (project + "/process/steps/1/disable", {"version": "1"}),
        (project + "/process/steps/1/delete", {"version": "1"}),
        (project + "/variables", var),
        (project + f"/variables/{ids['var']}", var),
        (project + f"/variables/{ids['var']}/delete", {}),
        (project + "/library-sets", {}),
        (project + "/releases", {"version": "2.0.0"}),
        (project + "/releases/1.0.0/deploy", {"environment": ids["env"]}),
        ("/library-sets", {"name": "Other"}),
        (f"/library-sets/{ids['library']}/variables", var),
        (f"/library-sets/{ids['library']}/variables/{ids['libvar']}/delete", {}),
    ]


def unchanged(octo: OctoTestAppliance, ids: dict[str, str]) -> None:
    api, pid = octo.api, ids["project"]
    assert api.get("/projects").json()["total"] == 1
    assert api.get("/library-variable-sets").json()["total"] == 1
    assert api.get(f"/projects/{pid}/process").json()["version"] == 1
    assert len(api.get(f"/projects/{pid}/variables").json()["variables"]) == 2
    assert api.get(f"/projects/{pid}/releases").json()["total"] == 1
    assert api.get("/deployments").json()["total"] == 0
    library = api.get(f"/library-variable-sets/{ids['library']}/variables").json()
    assert len(library["variables"]) == 1


def test_a_viewer_sees_no_edit_controls_and_a_forged_post_is_refused(
    world: tuple[OctoTestAppliance, dict[str, str]],
) -> None:
    octo, ids = world
    make_user(octo, "vera", "viewer", projects=[ids["project"]], password="vera-password-1")
    sign_in(octo.client, "vera", "vera-password-1")
    for path in pages(ids):
        page = octo.client.get(path)
        assert page.status_code in (200, 403), path
        html = page.text
        posts = re.findall(r'<form[^>]*method="post"[^>]*>', html)
        assert posts in ([], [SIGN_OUT_FORM]), path
        for control in ("Add step", "Add variable", "Create project", "Create a release", "Save"):
            assert f">{control}" not in html, (path, control)
        assert SECRET not in html
    for path, fields in writes(ids):
        answer = post(octo, path, **fields)
        assert answer.status_code == 403, (path, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html")
    unchanged(octo, ids)


#: forged posts: (the form's token, the headers, what the refusal names); a real session's
#: token is ``None`` here and filled in by the test
FORGED_POSTS = {
    "no CSRF token": ({}, {}, "CSRF"),
    "a forged CSRF token": ({"csrf_token": "forged"}, {}, "CSRF"),
    "a form from another site": ({"csrf_token": None}, {"Sec-Fetch-Site": "cross-site"}, ""),
}


@pytest.mark.parametrize("forgery", FORGED_POSTS, ids=str)
def test_a_forged_post_is_refused(
    world: tuple[OctoTestAppliance, dict[str, str]], forgery: str
) -> None:
    """Without the session's CSRF token, or posted from another site, every write is a 403."""
    octo, ids = world
    sign_in(octo.client, "admin", octo.admin_password)
    token, headers, named = FORGED_POSTS[forgery]
    token = {k: v or octo.client.cookies["octo_csrf"] for k, v in token.items()}
    for path, fields in writes(ids):
        data = {**token, **fields}
        answer = octo.client.post(path, data=data, headers=headers, follow_redirects=False)
        assert answer.status_code == 403, (path, answer.status_code)
        assert named in answer.text
    unchanged(octo, ids)


def test_every_page_has_the_csp_landmarks_no_inline_script_and_no_secret(
    world: tuple[OctoTestAppliance, dict[str, str]],
) -> None:
    octo, ids = world
    sign_in(octo.client, "admin", octo.admin_password)
    project = f"/projects/{ids['project']}"
    extra = [
        project + "/process/steps/new?type=deploy-package",
        project + "/releases/new",
        project + "/variables?sensitive=1",
    ]
    for path in pages(ids) + extra:
        answer = octo.client.get(path)
        assert answer.status_code == 200, path
        html = answer.text
        assert "unsafe-inline" not in answer.headers["content-security-policy"]
        assert inline_scripts(html) == [], path
        assert html.index("skip-link") < html.index("<header") < html.index('<main id="main"')
        assert SECRET not in html, path
        ids_seen = re.findall(r'\sid="([^"]+)"', html)
        assert len(ids_seen) == len(set(ids_seen)), (path, "duplicate ids")
        for label_for in re.findall(r'<label for="([^"]+)"', html):
            assert f'id="{label_for}"' in html, (path, label_for)


def test_a_form_with_too_many_fields_is_a_422_page(
    world: tuple[OctoTestAppliance, dict[str, str]],
) -> None:
    octo, ids = world
    sign_in(octo.client, "admin", octo.admin_password)
    fields = {f"env.{index}": "1" for index in range(600)}
    answer = post(octo, f"/projects/{ids['project']}/variables", name="X", value="1", **fields)
    assert answer.status_code == 422
    assert "more than 500 fields" in answer.text
    unchanged(octo, ids)
