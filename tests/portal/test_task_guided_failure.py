"""A guided-failure decision and a task with a sensitive variable on the task page, in
process: the four answers drawn from the interruption's options, 'skip' submitted with notes;
no page shows the sensitive value."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from octo_appliance.db import Interruption
from octo_appliance.testing import OctoTestAppliance
from tests.api.deploy_support import held_engine
from tests.portal.support import sign_in
from tests.portal.task_support import csrf_of, dev_with_a_local_target

SECRET = "hunter2-canary-5d1f"


@pytest.fixture
def octo(octo_appliance_factory) -> Iterator[OctoTestAppliance]:  # type: ignore[no-untyped-def]
    octo = octo_appliance_factory()
    with held_engine(octo, kinds=("deployment", "script")):
        yield octo


def test_a_guided_failure_is_answered_with_its_own_options(octo: OctoTestAppliance) -> None:
    api = octo.api
    env = api.post("/environments", json={"name": "Dev"}).json()["id"]
    project = api.post("/projects", json={"name": "Shop"}).json()["id"]
    release = api.post("/projects/Shop/releases", json={}).json()["id"]
    queued = api.post("/deployments", json={"release": release, "environment": "Dev"}).json()
    asked = Interruption.create_new(
        task_id=queued["task_id"],
        deployment=queued["id"],
        kind="guided-failure",
        title="Step 'Migrate' failed on db-01",
        instructions="exit code 3",
        step_name="Migrate",
        target_id="tgt_db",
        target_name="db-01",
        options=["retry", "skip", "exclude-target", "abort"],
        environment_id=env,
        project_id=project,
    )
    sign_in(octo.client, "admin", octo.admin_password)
    page = octo.client.get(f"/tasks/{queued['task_id']}").text
    assert "Guided failure: Step &#39;Migrate&#39; failed on db-01" in page
    assert "Step Migrate on db-01" in page
    for option, label in (
        ("retry", "Retry"),
        ("skip", "Skip"),
        ("exclude-target", "Exclude target"),
        ("abort", "Abort"),
    ):
        assert f'value="{option}" class="answer-{option}">{label}</button>' in page
    done = octo.client.post(
        f"/tasks/{queued['task_id']}/interruptions/{asked.id}",
        data={"csrf_token": csrf_of(page), "result": "skip", "notes": "db-01 is retired"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    row = Interruption.get_by_id(asked.id)
    assert (row.state, row.result, row.notes, row.submitted_by) == (
        "submitted",
        "skip",
        "db-01 is retired",
        "admin",
    )


def test_no_page_shows_a_sensitive_script_variable(octo: OctoTestAppliance) -> None:
    dev_with_a_local_target(octo)
    api = octo.api
    body = {
        "environment": "Dev",
        "syntax": "bash",
        "body": "echo #{Db.Password}",
        "variables": {"Db.Password": {"value": SECRET, "sensitive": True}},
    }
    task_id = api.post("/scripts", json=body).json()["task_id"]
    sign_in(octo.client, "admin", octo.admin_password)
    for path in (
        f"/tasks/{task_id}",
        "/tasks",
        f"/tasks/{task_id}/progress",
        f"/tasks/{task_id}/log.txt",
    ):
        answer = octo.client.get(path)
        assert answer.status_code == 200 and SECRET not in answer.text, path
