"""Interruptions answered on the task page, in process with the engine running: a manual
intervention waits, the page shows its form, a refused answer keeps the notes and shows the
error by its field, an approval with notes lets the deployment finish; who may answer."""

from __future__ import annotations

import re
from typing import Any

import pytest

from octo_appliance.db import Interruption
from octo_appliance.testing import OctoTestAppliance
from tests.api.helpers import make_user
from tests.engine.support import wait_until
from tests.portal.support import inline_scripts, sign_in
from tests.portal.task_support import csrf_of

STEPS = [
    {
        "name": "Check the site",
        "type": "manual-intervention",
        "properties": {"instructions": "Look at the shop before it goes on"},
    }
]


def _deploy(octo: OctoTestAppliance) -> tuple[str, str]:
    api = octo.api
    assert api.post("/environments", json={"name": "Dev"}).status_code == 201
    assert api.post("/projects", json={"name": "Shop"}).status_code == 201
    assert api.put("/projects/Shop/process", json={"steps": STEPS}).status_code == 200
    release = api.post("/projects/Shop/releases", json={}).json()
    queued = api.post("/deployments", json={"release": release["id"], "environment": "Dev"})
    assert queued.status_code == 201, queued.text
    task_id = queued.json()["task_id"]
    wait_until(
        lambda: Interruption.select().where(Interruption.task_id == task_id).exists(),
        "the manual intervention",
    )
    interruption = Interruption.get(Interruption.task_id == task_id)
    return task_id, str(interruption.id)


def _task(octo: OctoTestAppliance, task_id: str) -> dict[str, Any]:
    return dict(octo.api.get(f"/tasks/{task_id}").json())


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    return octo_appliance_factory(services=True)


def test_a_manual_intervention_is_approved_on_the_task_page(octo: OctoTestAppliance) -> None:
    task_id, interruption_id = _deploy(octo)
    sign_in(octo.client, "admin", octo.admin_password)
    page = octo.client.get(f"/tasks/{task_id}").text
    assert inline_scripts(page) == []
    assert "Manual intervention: Approve the deployment to continue: Check the site" in page
    assert "Look at the shop before it goes on" in page
    action = f'action="/tasks/{task_id}/interruptions/{interruption_id}"'
    assert action in page
    assert 'name="result" value="approve"' in page and 'name="result" value="reject"' in page
    assert "hx-trigger" not in page  # a waiting form is never swapped under the typist
    url = f"/tasks/{task_id}/interruptions/{interruption_id}"

    no_token = octo.client.post(url, data={"result": "approve", "notes": "ok"})
    assert no_token.status_code == 403
    wrong = octo.client.post(
        url, data={"csrf_token": csrf_of(page), "result": "retry", "notes": "typed notes 41"}
    )
    assert wrong.status_code == 422, wrong.text[-1500:]
    assert re.search(r'id="result-int_\w+-error">one of: approve, reject<', wrong.text)
    assert "typed notes 41</textarea>" in wrong.text  # what was typed is kept
    assert Interruption.get_by_id(interruption_id).state == "pending"

    done = octo.client.post(
        url,
        data={"csrf_token": csrf_of(page), "result": "approve", "notes": "site looks right"},
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (
        303,
        f"/tasks/{task_id}#interruptions",
    )
    wait_until(lambda: _task(octo, task_id)["state"] == "success", "the deployment to finish")
    after = octo.client.get(f"/tasks/{task_id}").text
    assert "<strong>approve</strong> by admin: site looks right" in after
    assert "admin answered &#39;approve&#39; (site looks right)." in after  # the log says so
    twice = octo.client.post(
        url, data={"csrf_token": csrf_of(after), "result": "reject", "notes": ""}
    )
    assert twice.status_code == 409 and "already answered" in twice.text


def test_a_viewer_cannot_answer_even_by_a_forged_post(octo: OctoTestAppliance) -> None:
    task_id, interruption_id = _deploy(octo)
    make_user(octo, "vera", "viewer", password="vera-password-1")
    sign_in(octo.client, "vera", "vera-password-1")
    page = octo.client.get(f"/tasks/{task_id}").text
    assert "you may not answer it" in page
    assert 'name="result"' not in page
    forged = octo.client.post(
        f"/tasks/{task_id}/interruptions/{interruption_id}",
        data={"csrf_token": csrf_of(page), "result": "approve", "notes": ""},
    )
    assert forged.status_code == 403 and "deployment.create" in forged.text
    assert Interruption.get_by_id(interruption_id).state == "pending"
    octo.api.post(f"/tasks/{task_id}/cancel")
