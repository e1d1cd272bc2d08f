"""The tasks list and the task page in process: filters, the log window (never the whole
log), earlier lines, the raw download, per-target state, cancel, who may do what, CSRF."""

from __future__ import annotations

import re

import pytest

from octo_appliance.db.audit import AuditEvent
from octo_appliance.db.tasks import ServerTask, TaskTargetResult
from octo_appliance.portal.task_log import WINDOW
from octo_appliance.testing import OctoTestAppliance
from tests.api.helpers import make_user
from tests.portal.support import inline_scripts, sign_in
from tests.portal.task_support import csrf_of, task_with_log

LOG_ROW = re.compile(r'<li class="line lvl-(\w+)[^"]*" data-seq="(\d+)"')


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    octo = octo_appliance_factory()
    sign_in(octo.client, "admin", octo.admin_password)
    return octo


def test_the_list_filters_by_state_and_kind(octo: OctoTestAppliance) -> None:
    done = task_with_log(octo, 0, "success", description="Deploy shop")
    failed = task_with_log(octo, 0, "failed", kind="health-check", description="Check health")
    page = octo.client.get("/tasks")
    assert page.status_code == 200 and f'href="/tasks/{done}"' in page.text
    assert f'href="/tasks/{failed}"' in page.text
    only = octo.client.get("/tasks", params={"state": "failed"}).text
    assert f'href="/tasks/{failed}"' in only and f'href="/tasks/{done}"' not in only
    by_kind = octo.client.get("/tasks", params={"kind": "script"}).text
    assert f'href="/tasks/{done}"' in by_kind and f'href="/tasks/{failed}"' not in by_kind
    wrong = octo.client.get("/tasks", params={"state": "sleeping"})
    assert wrong.status_code == 422
    assert 'id="state"' in wrong.text and 'aria-invalid="true"' in wrong.text
    assert 'id="state-error"' in wrong.text
    assert f'href="/tasks/{done}"' in wrong.text  # the other filters still apply


def test_a_long_log_opens_at_its_end_in_a_window(octo: OctoTestAppliance) -> None:
    task_id = task_with_log(octo, 3 * WINDOW + 20)
    page = octo.client.get(f"/tasks/{task_id}")
    assert page.status_code == 200
    rows = LOG_ROW.findall(page.text)
    assert len(rows) == WINDOW
    assert int(rows[0][1]) == 2 * WINDOW + 21 and int(rows[-1][1]) == 3 * WINDOW + 20
    first = int(rows[0][1])
    assert f'href="/tasks/{task_id}?before={first}#log"' in page.text
    assert 'data-live="false"' in page.text  # finished: nothing to follow
    assert inline_scripts(page.text) == []
    earlier = octo.client.get(f"/tasks/{task_id}/lines", params={"before": first})
    earlier_rows = [int(seq) for _level, seq in LOG_ROW.findall(earlier.text)]
    assert earlier_rows == list(range(first - WINDOW, first))
    assert f"?before={first - WINDOW}#log" in earlier.text
    start = octo.client.get(f"/tasks/{task_id}/lines", params={"before": 40}).text
    assert [int(s) for _l, s in LOG_ROW.findall(start)] == list(range(1, 40))
    assert "?before=" not in start  # nothing before line 1
    assert '<li class="line lvl-highlight step-start" data-seq="1"' in start
    no_js = octo.client.get(f"/tasks/{task_id}", params={"before": first}).text
    assert [int(s) for _l, s in LOG_ROW.findall(no_js)][-1] == first - 1


def test_a_running_task_is_followed_from_its_last_line(octo: OctoTestAppliance) -> None:
    task_id = task_with_log(octo, 30, "executing")
    page = octo.client.get(f"/tasks/{task_id}").text
    assert 'data-live="true"' in page and 'data-last="30"' in page
    assert re.search(r'<script src="/static/task-log\.[0-9a-f]{16}\.js" defer>', page)
    assert f'hx-get="/tasks/{task_id}/progress" hx-trigger="every 2s"' in page
    assert f'action="/tasks/{task_id}/cancel"' in page
    part = octo.client.get(f"/tasks/{task_id}/progress")
    assert part.status_code == 200 and part.text.lstrip().startswith('<section id="progress"')


def test_the_raw_log_downloads_whole(octo: OctoTestAppliance) -> None:
    task_id = task_with_log(octo, 5200)
    answer = octo.client.get(f"/tasks/{task_id}/log.txt")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == f'attachment; filename="{task_id}.log"'
    text = answer.text.splitlines()
    assert len(text) == 5200
    assert text[0].endswith("HIGHLIGHT Step 'Migrate' (run-script) started.")
    assert text[-1].endswith("VERBOSE   [db-01] line 5200 of the script")


def test_per_target_state_and_timing(octo: OctoTestAppliance) -> None:
    task_id = task_with_log(octo, 3, "failed", error="db-01: failed with exit code 3")
    TaskTargetResult.create_new(
        task=task_id,
        target_id="tgt_db",
        target_name="db-01",
        state="failed",
        exit_code=3,
        message="boom",
    )
    html = octo.client.get(f"/tasks/{task_id}").text
    assert "db-01: failed with exit code 3" in html
    row = re.search(r'<th scope="row">db-01</th>(.*?)</tr>', html, re.DOTALL)
    assert row and "state-failed" in row.group(1) and "<td>3</td>" in row.group(1)
    assert '<option value="tgt_db">db-01</option>' in html  # the log's target filter


def test_cancel_needs_the_token_and_is_audited(octo: OctoTestAppliance) -> None:
    task_id = task_with_log(octo, 0, "queued")
    page = octo.client.get(f"/tasks/{task_id}").text
    refused = octo.client.post(f"/tasks/{task_id}/cancel", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert ServerTask.get_by_id(task_id).state == "queued"
    done = octo.client.post(
        f"/tasks/{task_id}/cancel", data={"csrf_token": csrf_of(page)}, follow_redirects=False
    )
    assert (done.status_code, done.headers["location"]) == (303, f"/tasks/{task_id}")
    assert ServerTask.get_by_id(task_id).state == "canceled"
    assert AuditEvent.select().where(AuditEvent.action == "cancel").count() == 1
    again = octo.client.post(f"/tasks/{task_id}/cancel", data={"csrf_token": csrf_of(page)})
    assert again.status_code == 409 and "already finished" in again.text


def test_a_viewer_sees_no_cancel_and_a_forged_post_is_refused(
    octo: OctoTestAppliance,
) -> None:
    task_id = task_with_log(octo, 2, "executing")
    make_user(octo, "vera", "viewer", password="vera-password-1")
    octo.client.cookies.clear()
    sign_in(octo.client, "vera", "vera-password-1")
    page = octo.client.get(f"/tasks/{task_id}")
    assert page.status_code == 200
    assert "/cancel" not in page.text
    forged = octo.client.post(f"/tasks/{task_id}/cancel", data={"csrf_token": csrf_of(page.text)})
    assert forged.status_code == 403 and "task.cancel" in forged.text
    assert ServerTask.get_by_id(task_id).state == "executing"


def test_a_task_out_of_scope_or_missing_is_a_page(octo: OctoTestAppliance) -> None:
    missing = octo.client.get("/tasks/tsk_nothere0000")
    assert missing.status_code == 404 and "no task with id" in missing.text
    assert octo.client.get("/tasks/tsk_nothere0000/log.txt").status_code == 404
    assert octo.client.get("/tasks/tsk_nothere0000/lines?before=9").status_code == 404
    task_id = task_with_log(octo, 1, environment_id="env_other00000")
    make_user(octo, "pat", "viewer", environments=["env_mine000000"], password="pat-password-1")
    octo.client.cookies.clear()
    sign_in(octo.client, "pat", "pat-password-1")
    assert octo.client.get(f"/tasks/{task_id}").status_code == 403
    assert octo.client.get(f"/tasks/{task_id}/log.txt").status_code == 403
