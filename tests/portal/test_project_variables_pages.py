"""The variables editor (project and library sets), releases and deploy/promote, in process:
sensitive values write-only and never in any page, scopes, errors next to their fields, the
lifecycle's verdict on the deploy buttons, and the redirect to the task page."""

from __future__ import annotations

import re

import pytest

from octo_appliance.testing import OctoTestAppliance
from tests.api.deploy_support import held_engine
from tests.api.helpers import make_user
from tests.portal.support import sign_in
from tests.portal.test_projects_pages import field_error, make_project, post

SECRET = "s3cret-canary-5d1e"


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    octo = octo_appliance_factory()
    sign_in(octo.client, "admin", octo.admin_password)
    return octo


def variables(octo: OctoTestAppliance, pid: str) -> list[dict[str, object]]:
    return list(octo.api.get(f"/projects/{pid}/variables").json()["variables"])


def test_variables_add_edit_scope_and_delete(octo: OctoTestAppliance) -> None:
    dev = octo.api.post("/environments", json={"name": "Dev"}).json()["id"]
    pid = make_project(octo)
    base = f"/projects/{pid}/variables"
    added = post(octo, base, name="Port", value="8080", roles="web, api", **{f"env.{dev}": "1"})
    assert (added.status_code, added.headers["location"]) == (303, base)
    sensitive = post(octo, base, name="Db.Password", value=SECRET, sensitive="1", steps="Web")
    assert sensitive.status_code == 303
    (port, password) = variables(octo, pid)
    assert port["value"] == "8080"
    assert port["scope"] == {
        "environments": [dev],
        "roles": ["web", "api"],
        "targets": [],
        "steps": [],
    }
    assert password["sensitive"] and password["has_value"] and password["value"] is None
    page = octo.client.get(base).text
    assert SECRET not in page
    assert re.search(r'<span class="badge secret">sensitive</span> set', page)
    assert "environments: Dev" in page and "roles: web, api" in page

    form = octo.client.get(f"{base}/{password['id']}").text
    assert 'name="value" type="password" value=""' in form and "It is set" in form
    kept = post(octo, f"{base}/{password['id']}", name="Db.Password", value="", sensitive="1")
    assert kept.status_code == 303
    snapshot = octo.api.post(f"/projects/{pid}/releases", json={}).json()
    assert snapshot["variables"][1]["name"] == "Db.Password"  # still has its value: released
    edited = post(octo, f"{base}/{port['id']}", name="Port", value="9090", roles="")
    assert edited.status_code == 303
    assert variables(octo, pid)[0]["value"] == "9090"
    assert variables(octo, pid)[0]["scope"]["roles"] == []
    deleted = post(octo, f"{base}/{port['id']}/delete")
    assert deleted.status_code == 303
    assert [v["name"] for v in variables(octo, pid)] == ["Db.Password"]
    assert octo.client.get(f"{base}/var_nope").status_code == 404


def test_variable_errors_stand_next_to_their_fields_and_keep_no_secret(
    octo: OctoTestAppliance,
) -> None:
    pid = make_project(octo)
    base = f"/projects/{pid}/variables"
    assert post(octo, base, name="Port", value="1").status_code == 303
    twice = post(octo, base, name="port", value="2", roles="")
    assert twice.status_code == 422
    assert "listed twice with the same scope" in (field_error(twice.text, "f-name") or "")
    assert 'value="port"' in twice.text and ">2</textarea>" in twice.text
    unknown = post(octo, base, name="Key", value=SECRET, sensitive="1", targets="no-such-box")
    assert unknown.status_code == 422
    assert (
        field_error(unknown.text, "f-targets") == "no target with id or name &#39;no-such-box&#39;"
    )
    assert SECRET not in unknown.text and 'value="no-such-box"' in unknown.text
    empty = post(octo, base, name="", value="x")
    assert empty.status_code == 422 and field_error(empty.text, "f-name")
    assert len(variables(octo, pid)) == 1


def test_library_sets_are_created_edited_and_included(octo: OctoTestAppliance) -> None:
    pid = make_project(octo)
    made = post(octo, "/library-sets", name="Common", description="shared")
    assert made.status_code == 303
    set_path = made.headers["location"]
    set_id = set_path.rsplit("/", 1)[-1]
    taken = post(octo, "/library-sets", name="Common", description="")
    assert taken.status_code == 409 and field_error(taken.text, "f-name")
    added = post(octo, f"{set_path}/variables", name="Smtp.Password", value=SECRET, sensitive="1")
    assert (added.status_code, added.headers["location"]) == (303, set_path)
    assert post(octo, f"{set_path}/variables", name="Region", value="eu").status_code == 303
    page = octo.client.get(set_path).text
    assert (
        "Smtp.Password" in page and SECRET not in page and '<code class="value">eu</code>' in page
    )
    listed = octo.client.get("/library-sets").text
    assert f'<a href="/library-sets/{set_id}">Common</a>' in listed
    included = post(octo, f"/projects/{pid}/library-sets", **{f"set.{set_id}": "1"})
    assert included.status_code == 303
    assert octo.api.get(f"/projects/{pid}").json()["library_sets"] == [set_id]
    page = octo.client.get(f"/projects/{pid}/variables").text
    assert re.search(
        rf'id="set-{set_id}" name="set.{set_id}" type="checkbox" value="1" checked', page
    )
    release = octo.api.post(f"/projects/{pid}/releases", json={}).json()
    shown = octo.client.get(f"/projects/{pid}/releases/{release['version']}").text
    assert "library:Common" in shown and SECRET not in shown
    assert "sensitive</span> hidden" in shown


def lifecycle_world(octo: OctoTestAppliance) -> tuple[str, str, str]:
    dev = octo.api.post("/environments", json={"name": "Dev"}).json()["id"]
    prod = octo.api.post("/environments", json={"name": "Prod", "sort_order": 2}).json()["id"]
    pid = make_project(octo)
    step = {"name": "Approve", "type": "manual-intervention", "properties": {"instructions": "ok"}}
    assert octo.api.put(f"/projects/{pid}/process", json={"steps": [step]}).status_code == 200
    return pid, dev, prod


def test_create_a_release_and_view_its_snapshot(octo: OctoTestAppliance) -> None:
    pid, _, _ = lifecycle_world(octo)
    post(octo, f"/projects/{pid}/variables", name="Key", value=SECRET, sensitive="1")
    form = octo.client.get(f"/projects/{pid}/releases/new")
    assert form.status_code == 200 and "Create release" in form.text
    bad = post(octo, f"/projects/{pid}/releases", version="one", notes="first try")
    assert bad.status_code == 422
    assert field_error(bad.text, "f-version") == "expected MAJOR.MINOR.PATCH"
    assert "first try</textarea>" in bad.text
    made = post(octo, f"/projects/{pid}/releases", version="1.0.0", notes="first")
    assert (made.status_code, made.headers["location"]) == (
        303,
        f"/projects/{pid}/releases/1.0.0",
    )
    again = post(octo, f"/projects/{pid}/releases", version="1.0.0", notes="")
    assert again.status_code == 409 and "already has a release 1.0.0" in (
        field_error(again.text, "f-version") or ""
    )
    page = octo.client.get(made.headers["location"]).text
    assert "<strong>Approve</strong> (manual-intervention)" in page
    assert "Key" in page and SECRET not in page
    listed = octo.client.get(f"/projects/{pid}/releases").text
    assert f'<a href="/projects/{pid}/releases/1.0.0">1.0.0</a>' in listed
    assert octo.client.get(f"/projects/{pid}/releases/9.9.9").status_code == 404


def test_release_packages_are_asked_for_and_refused_next_to_them(
    octo: OctoTestAppliance,
) -> None:
    pid = make_project(octo)
    step = {
        "name": "Web",
        "type": "deploy-package",
        "roles": ["web"],
        "properties": {"package": "shop"},
    }
    assert octo.api.put(f"/projects/{pid}/process", json={"steps": [step]}).status_code == 200
    form = octo.client.get(f"/projects/{pid}/releases/new").text
    assert '<label for="f-package-0">shop (step Web)</label>' in form
    assert "No version of it is in the feed yet." in form
    refused = post(octo, f"/projects/{pid}/releases", version="1.0.0", **{"package.0": "2.0.0"})
    assert refused.status_code == 422
    assert re.search(r'<p class="field-error" id="f-packages-error">[^<]*shop', refused.text)
    assert 'value="2.0.0"' in refused.text


def test_deploy_buttons_follow_the_lifecycle_and_deploying_opens_the_task(
    octo: OctoTestAppliance,
) -> None:
    pid, dev, prod = lifecycle_world(octo)
    assert post(octo, f"/projects/{pid}/releases", version="1.0.0").status_code == 303
    page = octo.client.get(f"/projects/{pid}/releases/1.0.0").text
    assert re.search(r'<button type="submit">Deploy to Dev</button>', page)
    assert re.search(
        r'<button type="submit" disabled aria-describedby="why-2">Promote to Prod</button>\s*'
        r'<p class="why" id="why-2">Not yet: phase &#39;Dev&#39; is not complete.</p>',
        page,
    )
    early = post(octo, f"/projects/{pid}/releases/1.0.0/deploy", environment=prod)
    assert early.status_code == 409
    assert "deploy it to the earlier phases of its lifecycle first" in early.text
    with held_engine(octo) as held:
        deployed = post(octo, f"/projects/{pid}/releases/1.0.0/deploy", environment=dev)
        held.release()
    assert deployed.status_code == 303, deployed.text
    task = octo.api.get(f"/deployments?project={pid}").json()["items"][0]["task_id"]
    assert deployed.headers["location"] == f"/tasks/{task}"


def test_a_deployer_limited_to_dev_gets_no_button_for_prod(octo: OctoTestAppliance) -> None:
    pid, dev, prod = lifecycle_world(octo)
    octo.api.post(f"/projects/{pid}/releases", json={"version": "1.0.0"})
    make_user(octo, "dee", "project-deployer", environments=[dev], password="dee-password-1")
    octo.client.cookies.clear()
    sign_in(octo.client, "dee", "dee-password-1")
    page = octo.client.get(f"/projects/{pid}/releases/1.0.0").text
    assert '<button type="submit">Deploy to Dev</button>' in page
    assert "Promote to Prod" not in page and "you may not deploy here" in page
    forged = post(octo, f"/projects/{pid}/releases/1.0.0/deploy", environment=prod)
    assert forged.status_code == 403
