"""The script console in process: the form, the API's errors next to their fields with what
was typed kept, a queued script opening its task page, CSRF, and a viewer's forged post."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from octo_appliance.db.tasks import ServerTask
from octo_appliance.testing import OctoTestAppliance
from tests.api.deploy_support import held_engine
from tests.api.helpers import make_user
from tests.portal.support import inline_scripts, sign_in
from tests.portal.task_support import csrf_of, dev_with_a_local_target


@pytest.fixture
def octo(octo_appliance_factory) -> Iterator[OctoTestAppliance]:  # type: ignore[no-untyped-def]
    octo = octo_appliance_factory()
    dev_with_a_local_target(octo)
    with held_engine(octo, kinds=("script",)):
        yield octo


def _run(octo: OctoTestAppliance, **fields: str) -> object:
    page = octo.client.get("/scripts").text
    form = {"csrf_token": csrf_of(page), "syntax": "bash", "body": "echo hi", **fields}
    return octo.client.post("/scripts", data=form, follow_redirects=False)


def test_a_script_runs_and_opens_its_task(octo: OctoTestAppliance) -> None:
    sign_in(octo.client, "admin", octo.admin_password)
    page = octo.client.get("/scripts")
    assert page.status_code == 200 and inline_scripts(page.text) == []
    assert '<option value="Dev">Dev</option>' in page.text
    assert '<datalist id="target-names"><option value="here"></option></datalist>' in page.text
    assert '<datalist id="role-names"><option value="web"></option></datalist>' in page.text
    answer = _run(octo, environment="Dev", roles="web", body="echo #{Octo.Machine.Name}")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    task_id = answer.headers["location"].removeprefix("/tasks/")  # type: ignore[attr-defined]
    task = ServerTask.get_by_id(task_id)
    assert task.kind == "script" and task.arguments["body"] == "echo #{Octo.Machine.Name}"
    assert octo.client.get(f"/tasks/{task_id}").status_code == 200


def test_errors_stand_next_to_their_fields_and_keep_the_script(octo: OctoTestAppliance) -> None:
    sign_in(octo.client, "admin", octo.admin_password)
    nowhere = _run(octo, body="echo kept-body-7")
    assert nowhere.status_code == 422  # type: ignore[attr-defined]
    html = nowhere.text  # type: ignore[attr-defined]
    assert re.search(r'id="environment"[^>]*aria-invalid="true"', html)
    assert (
        '<p class="field-error" id="environment-error">give an environment or targets</p>' in html
    )
    assert "echo kept-body-7</textarea>" in html
    unknown = _run(octo, targets="ghost, here").text  # type: ignore[attr-defined]
    assert "no target with id or name &#39;ghost&#39;" in unknown
    assert 'value="ghost, here"' in unknown
    typo = _run(octo, environment="Dev", body="echo #{Missing.Var}").text  # type: ignore[attr-defined]
    assert re.search(r'id="body-error">[^<]*Missing\.Var', typo)
    empty = _run(octo, environment="Dev", body="", syntax="cobol")
    assert empty.status_code == 422  # type: ignore[attr-defined]
    assert 'id="syntax-error"' in empty.text and 'id="body-error"' in empty.text  # type: ignore[attr-defined]
    wrong_time = _run(octo, environment="Dev", timeout="soon").text  # type: ignore[attr-defined]
    assert 'id="timeout-error"' in wrong_time
    no_window = _run(octo, environment="Dev", window="0").text  # type: ignore[attr-defined]
    assert re.search(r'id="window-error">[^<]*greater than or equal to 1', no_window)
    assert 'value="0"' in no_window
    assert ServerTask.select().count() == 0


def test_csrf_and_a_viewers_forged_post_are_refused(octo: OctoTestAppliance) -> None:
    sign_in(octo.client, "admin", octo.admin_password)
    form = {"environment": "Dev", "syntax": "bash", "body": "id"}
    assert octo.client.post("/scripts", data=form).status_code == 403
    assert octo.client.post("/scripts", data={**form, "csrf_token": "nope"}).status_code == 403
    make_user(octo, "vera", "viewer", password="vera-password-1")
    octo.client.cookies.clear()
    sign_in(octo.client, "vera", "vera-password-1")
    forged = _run(octo, environment="Dev")
    assert forged.status_code == 403  # type: ignore[attr-defined]
    assert "script.run" in forged.text  # type: ignore[attr-defined]
    assert ServerTask.select().count() == 0


def test_a_window_and_a_timeout_reach_the_task(octo: OctoTestAppliance) -> None:
    """The form's numbers arrive as text; the API's types are strict (a timeout typed in the
    form used to be refused as "not a valid integer", whatever it was)."""
    sign_in(octo.client, "admin", octo.admin_password)
    assert 'id="window" name="window"' in octo.client.get("/scripts").text

    answer = _run(octo, environment="Dev", window="3", timeout=" 60 ")

    assert answer.status_code == 303  # type: ignore[attr-defined]
    task = ServerTask.get_by_id(answer.headers["location"].removeprefix("/tasks/"))  # type: ignore[attr-defined]
    assert task.arguments["window"] == 3 and task.timeout_seconds == 60


@pytest.mark.parametrize("typed", ["²", "-1", "1.5", "9" * 40])
def test_a_number_that_is_not_one_is_refused_next_to_its_field(
    octo: OctoTestAppliance, typed: str
) -> None:
    sign_in(octo.client, "admin", octo.admin_password)

    answer = _run(octo, environment="Dev", window=typed)

    assert answer.status_code == 422  # type: ignore[attr-defined]
    assert 'id="window-error"' in answer.text  # type: ignore[attr-defined]
    assert ServerTask.select().count() == 0
