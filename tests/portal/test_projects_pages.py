"""The projects list and overview and the process editor, in process: forms drawn from the
step types' schemas (a plugin's too), the API's errors next to their fields, what was typed
kept (never a secret), and every change read back through the API."""

from __future__ import annotations

import re
from typing import Any

import pytest

from octo_appliance.api.auth import CSRF_COOKIE
from octo_appliance.testing import OctoTestAppliance
from tests.api.test_dashboard import deployment
from tests.api.test_step_types import NotifyPlugin
from tests.portal.support import sign_in


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    octo = octo_appliance_factory(extra_plugins=(NotifyPlugin(),))
    sign_in(octo.client, "admin", octo.admin_password)
    return octo


def post(octo: OctoTestAppliance, path: str, **fields: Any) -> Any:
    data = {"csrf_token": octo.client.cookies[CSRF_COOKIE], **fields}
    return octo.client.post(path, data=data, follow_redirects=False)


def field_error(html: str, field_id: str) -> str | None:
    """The error shown next to a field, if the field points at it (aria-describedby)."""
    tag = re.search(rf'<(?:input|textarea|select)[^>]*id="{field_id}"[^>]*>', html)
    assert tag is not None, f"no field {field_id}"
    if 'aria-invalid="true"' not in tag.group(0):
        return None
    found = re.search(rf'<p class="field-error" id="{field_id}-error">([^<]*)</p>', html)
    assert found is not None and f"{field_id}-error" in tag.group(0)
    return found.group(1)


def make_project(octo: OctoTestAppliance, name: str = "Shop") -> str:
    answer = post(octo, "/projects", name=name, description="The shop", lifecycle="")
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"]).rsplit("/", 1)[-1]


def steps(octo: OctoTestAppliance, pid: str) -> list[dict[str, Any]]:
    return list(octo.api.get(f"/projects/{pid}/process").json()["steps"])


def test_create_a_project_errors_next_to_the_fields(octo: OctoTestAppliance) -> None:
    empty = post(octo, "/projects", name="", description="kept text", lifecycle="")
    assert empty.status_code == 422
    assert field_error(empty.text, "f-name")
    assert "kept text</textarea>" in empty.text
    pid = make_project(octo)
    taken = post(octo, "/projects", name="Shop", description="", lifecycle="")
    assert taken.status_code == 409
    assert "already" in (field_error(taken.text, "f-name") or "")
    assert 'value="Shop"' in taken.text
    assert octo.api.get(f"/projects/{pid}").json()["description"] == "The shop"
    listed = octo.client.get("/projects")
    assert f'<a href="/projects/{pid}">Shop</a>' in listed.text
    assert "1 project<" in listed.text
    assert "No project's name holds" in octo.client.get("/projects?q=zzz").text


def test_the_list_pages_through_many_projects(octo: OctoTestAppliance) -> None:
    for index in range(55):
        octo.api.post("/projects", json={"name": f"P{index:02d}"})
    first = octo.client.get("/projects").text
    assert first.count('<th scope="row">') == 50 and "Next page" in first
    second = octo.client.get("/projects?skip=50").text
    assert second.count('<th scope="row">') == 5 and "Previous page" in second
    found = octo.client.get("/projects?q=P5").text
    assert re.findall(r'">(P5\d)</a>', found) == [f"P5{i}" for i in range(5)]


def test_overview_shows_releases_and_the_latest_deployment_per_environment(
    octo: OctoTestAppliance,
) -> None:
    dev = octo.api.post("/environments", json={"name": "Dev"}).json()["id"]
    octo.api.post("/environments", json={"name": "Prod", "sort_order": 2})
    pid = make_project(octo)
    deployment(pid, dev, "1.0.0", "success", 50)
    deployment(pid, dev, "1.1.0", "failed", 10)
    by_slug = octo.client.get("/projects/Shop")
    assert by_slug.status_code == 200
    html = octo.client.get(f"/projects/{pid}").text
    assert '<a href="/projects" aria-current="page">Projects</a>' in html
    assert f'<a href="/projects/{pid}" aria-current="page">Overview</a>' in html
    assert "<h1>Shop</h1>" in html and "The shop" in html
    dev_row = re.search(r'<th scope="row">Dev</th>(.*?)</tr>', html, re.DOTALL)
    assert dev_row is not None
    assert "1.1.0" in dev_row.group(1) and "state-failed" in dev_row.group(1)
    assert '<a href="/tasks/tsk_missing00000">' in dev_row.group(1)
    assert re.search(r'<th scope="row">Prod</th>\s*<td colspan="4">Not deployed yet', html)
    assert html.index(">1.1.0</a>") < html.index(">1.0.0</a>")  # releases newest first
    assert octo.client.get("/projects/nope").status_code == 404


def test_a_step_form_is_drawn_from_the_step_types_schema(octo: OctoTestAppliance) -> None:
    pid = make_project(octo)
    page = octo.client.get(f"/projects/{pid}/process/steps/new?type=deploy-package").text
    assert re.search(r'<label for="f-prop-package">package <span class="required">', page)
    assert 'name="prop.package" type="text"' in page
    assert re.search(r'<textarea id="f-prop-substitute_files"', page)  # a list
    assert re.search(r'<select id="f-prop-purge"[^>]*>\s*<option value="" selected>Default', page)
    assert re.search(r'<select id="f-prop-run_on"', page) and '"appliance"' in page  # an enum
    assert re.search(r'<select id="f-prop-deploy-syntax"', page)  # a script: syntax and body
    assert 'name="prop.keep_releases" type="number"' in page
    plugin = octo.client.get(f"/projects/{pid}/process/steps/new?type=notify-chat").text
    assert "(plugin notify_plugin)" in plugin
    assert re.search(r'name="prop.token" type="password" value=""', plugin)
    assert octo.client.get(f"/projects/{pid}/process/steps/new?type=nope").status_code == 404


def test_adding_steps_shows_the_apis_errors_next_to_their_fields(octo: OctoTestAppliance) -> None:
    pid = make_project(octo)
    new = f"/projects/{pid}/process/steps"
    bad = post(
        octo, new, type="deploy-package", name="Web", version="0", **{"prop.keep_releases": "x"}
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "f-prop-keep_releases") == "Enter a whole number."
    bad = post(
        octo, new, type="deploy-package", name="Web", version="0", **{"prop.keep_releases": "0"}
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "f-prop-package") == "is required"
    assert field_error(bad.text, "f-prop-keep_releases") == "must be at least 1"
    assert "give at least one target role" in (field_error(bad.text, "f-roles") or "")
    assert 'id="f-name" name="name" type="text" value="Web"' in bad.text  # what was typed
    assert steps(octo, pid) == []
    made = post(
        octo,
        new,
        type="deploy-package",
        name="Web",
        roles="web, api",
        version="0",
        **{
            "prop.package": "shop",
            "prop.substitute_files": "a.conf\n\nb/*.json",
            "prop.purge": "true",
            "prop.install_dir": "/srv/shop",
        },
    )
    assert made.status_code == 303, made.text
    assert made.headers["location"] == f"/projects/{pid}/process#step-1"
    made = post(
        octo,
        new,
        type="manual-intervention",
        name="Approve",
        version="1",
        condition="always",
        **{"prop.instructions": "Check the shop"},
    )
    assert made.status_code == 303, made.text
    web, approve = steps(octo, pid)
    assert web["roles"] == ["web", "api"]
    assert web["properties"] == {
        "package": "shop",
        "substitute_files": ["a.conf", "b/*.json"],
        "purge": True,
        "install_dir": "/srv/shop",
    }
    assert approve["properties"] == {"instructions": "Check the shop"}
    assert approve["condition"] == "always" and approve["disabled"] is False
    duplicate = post(
        octo, new, type="manual-intervention", name="web", version="2", **{"prop.instructions": "x"}
    )
    assert duplicate.status_code == 422
    assert "also the name of step 0" in (field_error(duplicate.text, "f-name") or "")


def test_a_plugins_secret_property_is_never_shown_and_kept_when_left_empty(
    octo: OctoTestAppliance,
) -> None:
    pid = make_project(octo)
    fields = {
        "prop.room": "ops",
        "prop.message": "hi",
        "prop.token": "tok-7f3a9",
        "prop.priority": "9",
    }
    bad = post(
        octo,
        f"/projects/{pid}/process/steps",
        type="notify-chat",
        name="Tell",
        version="0",
        **fields,
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "f-prop-priority") == "must be at most 5"
    assert "tok-7f3a9" not in bad.text and 'value="ops"' in bad.text
    fields["prop.priority"] = "2"
    assert (
        post(
            octo,
            f"/projects/{pid}/process/steps",
            type="notify-chat",
            name="Tell",
            version="0",
            **fields,
        ).status_code
        == 303
    )
    edit = octo.client.get(f"/projects/{pid}/process/steps/1").text
    assert "tok-7f3a9" not in edit and "It is set: leave empty to keep it." in edit
    saved = post(
        octo,
        f"/projects/{pid}/process/steps/1",
        name="Tell",
        version="1",
        **{**fields, "prop.token": "", "prop.format": "md"},
    )
    assert saved.status_code == 303
    assert steps(octo, pid)[0]["properties"] == {
        "room": "ops",
        "message": "hi",
        "token": "tok-7f3a9",
        "priority": 2,
        "format": "md",
    }


def test_edit_move_disable_enable_and_delete_steps(octo: OctoTestAppliance) -> None:
    pid = make_project(octo)
    octo.api.post("/environments", json={"name": "Dev"})
    body = {
        "steps": [
            {"name": n, "type": "manual-intervention", "properties": {"instructions": n}}
            for n in ("A", "B", "C")
        ]
    }
    assert octo.api.put(f"/projects/{pid}/process", json=body).status_code == 200
    env = octo.api.get("/environments").json()["items"][0]["id"]
    edit = octo.client.get(f"/projects/{pid}/process/steps/2")
    assert 'value="B"' in edit.text and "Check" not in edit.text
    saved = post(
        octo,
        f"/projects/{pid}/process/steps/2",
        name="B2",
        version="1",
        timeout="60",
        condition="variable",
        condition_variable="#{Go}",
        **{"prop.instructions": "do B", f"env.{env}": "1"},
    )
    assert saved.status_code == 303, saved.text
    second = steps(octo, pid)[1]
    assert (second["name"], second["timeout"], second["environments"]) == ("B2", 60, [env])
    assert second["condition"] == {"variable": "#{Go}"}
    assert post(octo, f"/projects/{pid}/process/steps/3/move-up", version="2").status_code == 303
    assert [s["name"] for s in steps(octo, pid)] == ["A", "C", "B2"]
    assert post(octo, f"/projects/{pid}/process/steps/1/disable", version="3").status_code == 303
    assert [s["disabled"] for s in steps(octo, pid)] == [True, False, False]
    page = octo.client.get(f"/projects/{pid}/process").text
    assert re.search(r'<tr id="step-1" class="disabled">', page) and "Enable<span" in page
    assert post(octo, f"/projects/{pid}/process/steps/1/enable", version="4").status_code == 303
    assert post(octo, f"/projects/{pid}/process/steps/1/move-down", version="5").status_code == 303
    assert post(octo, f"/projects/{pid}/process/steps/3/delete", version="6").status_code == 303
    assert [(s["name"], s["disabled"]) for s in steps(octo, pid)] == [("C", False), ("A", False)]
    stale = post(octo, f"/projects/{pid}/process/steps/1/delete", version="3")
    assert stale.status_code == 409, stale.text
    assert "the process changed since version 3" in stale.text
    assert len(steps(octo, pid)) == 2
    assert octo.client.get(f"/projects/{pid}/process/steps/9").status_code == 404
    assert post(octo, f"/projects/{pid}/process/steps/1/explode", version="7").status_code == 404
