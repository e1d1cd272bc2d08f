"""Environments and targets in the portal, in process: create, edit and delete by the forms,
errors next to their fields with what was typed kept, the targets' health and agent, and the
add-target page's one-line install (its token shown in that answer only)."""

from __future__ import annotations

import re

import pytest

from octo_appliance.db import AuditEvent, Environment, RegistrationToken, Target
from octo_appliance.testing import OctoTestAppliance
from tests.portal.admin_support import field_error, make_target, post, signed_in


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    return octo_appliance_factory()


def test_create_an_environment_and_see_it_in_order(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    made = post(client, "/environments", {"name": "Prod", "description": "", "sort_order": "9"})
    assert made.status_code == 303
    env = Environment.get(Environment.name == "Prod")
    assert made.headers["location"] == f"/environments/{env.id}"
    assert env.sort_order == 9
    post(client, "/environments", {"name": "Dev", "sort_order": "1"})
    listing = client.get("/environments").text
    assert re.findall(r'<a href="/environments/[^"]+">([^<]+)</a>', listing) == ["Dev", "Prod"]
    audit = AuditEvent.get(AuditEvent.resource_id == env.id)
    assert (audit.action, audit.username) == ("create", "admin")


def test_errors_stand_next_to_their_field_and_keep_what_was_typed(
    octo: OctoTestAppliance,
) -> None:
    client = signed_in(octo)
    typed = {"name": "", "description": "Staging for the shop", "sort_order": "soon"}
    answer = post(client, "/environments", typed)
    assert answer.status_code == 422
    assert field_error(answer.text, "env-order") == "Input should be a valid integer"
    assert field_error(answer.text, "env-name").startswith("String should have at least 1")
    assert ">Staging for the shop</textarea>" in answer.text
    assert 'value="soon"' in answer.text
    post(client, "/environments", {"name": "Dev"})
    taken = post(client, "/environments", {"name": "Dev", "description": "again"})
    assert taken.status_code == 422
    assert "already exists" in field_error(taken.text, "env-name")
    assert ">again</textarea>" in taken.text
    assert Environment.select().count() == 1


def test_edit_and_delete_an_environment(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    env_id = post(client, "/environments", {"name": "Dev"}).headers["location"].split("/")[-1]
    saved = post(client, f"/environments/{env_id}", {"name": "Development", "sort_order": "3"})
    assert saved.status_code == 303
    assert Environment.get_by_id(env_id).name == "Development"
    bad = post(client, f"/environments/{env_id}", {"name": "", "description": "kept"})
    assert bad.status_code == 422 and ">kept</textarea>" in bad.text
    target = make_target(octo, "web-1", env_id, ["web"])
    refused = post(client, f"/environments/{env_id}/delete")
    assert refused.status_code == 409
    assert "still holds 1 target(s)" in refused.text and 'role="alert"' in refused.text
    post(client, f"/targets/{target}/delete")
    gone = post(client, f"/environments/{env_id}/delete")
    assert (gone.status_code, gone.headers["location"]) == (303, "/environments")
    assert not Environment.select().exists()


def test_targets_show_health_agent_comms_and_last_seen(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    env_id = post(client, "/environments", {"name": "Dev"}).headers["location"].split("/")[-1]
    target_id = make_target(octo, "web-1", env_id, ["web", "db"])
    Target.update(
        health_status="Healthy", agent_version="9.8.7", communication_style="polling"
    ).where(Target.id == target_id).execute()
    octo.appliance.data_changed()
    env_page = client.get(f"/environments/{env_id}").text
    row = re.search(r'<a href="/targets/[^"]+">web-1</a>.*?</tr>', env_page, re.DOTALL)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(0), re.DOTALL)
    assert [re.sub(r"<[^>]+>", "", c).strip() for c in cells] == [
        "Healthy",
        "9.8.7",
        "polling",
        "never",
        "db, web",
    ]
    page = client.get(f"/targets/{target_id}").text
    assert "Run a health check" in page and "9.8.7" in page
    renamed = post(
        client,
        f"/targets/{target_id}",
        {"name": "web-2", "environments": "Dev", "roles": "web"},
    )
    assert renamed.status_code == 303
    assert Target.get_by_id(target_id).name == "web-2"
    no_role = post(client, f"/targets/{target_id}", {"name": "web-2", "environments": "Dev"})
    assert no_role.status_code == 422 and field_error(no_role.text, "target-roles")
    wrong = post(
        client, f"/targets/{target_id}", {"name": "web-2", "environments": "Nowhere", "roles": "x"}
    )
    assert wrong.status_code == 422
    assert "Nowhere" in field_error(wrong.text, "target-environments")
    assert 'value="Nowhere"' in wrong.text


def test_a_health_check_without_a_task_engine_says_so_on_the_page(
    octo: OctoTestAppliance,
) -> None:
    client = signed_in(octo)
    env_id = post(client, "/environments", {"name": "Dev"}).headers["location"].split("/")[-1]
    target_id = make_target(octo, "web-1", env_id, ["web"])
    answer = post(client, f"/targets/{target_id}/health-check")
    assert answer.status_code == 503
    assert 'role="alert"' in answer.text


def test_a_health_check_goes_to_its_task(octo_appliance_factory) -> None:  # type: ignore[no-untyped-def]
    octo = octo_appliance_factory(services=True)
    client = signed_in(octo)
    env_id = post(client, "/environments", {"name": "Dev"}).headers["location"].split("/")[-1]
    target_id = make_target(octo, "web-1", env_id, ["web"])
    answer = post(client, f"/targets/{target_id}/health-check")
    assert answer.status_code == 303
    task_id = answer.headers["location"].removeprefix("/tasks/")
    task = octo.api.get(f"/tasks/{task_id}").json()
    assert task["kind"] == "health-check"


def test_add_target_shows_the_install_command_once(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    env_id = post(client, "/environments", {"name": "Dev"}).headers["location"].split("/")[-1]
    form = client.get(f"/environments/{env_id}/add-target")
    assert form.status_code == 200
    assert not RegistrationToken.select().exists()  # reading the page makes no token
    fields = {"roles": "web, db", "mode": "polling", "expires_in": "3600", "max_uses": "2"}
    made = post(client, f"/environments/{env_id}/add-target", fields)
    assert made.status_code == 201
    assert made.headers["cache-control"] == "no-store"
    command = re.search(r'aria-label="One-line install command"><code>([^<]+)</code>', made.text)
    assert command is not None
    token = re.search(r"--token (\S+) --poll", command.group(1))
    assert token is not None
    assert command.group(1).startswith("curl -fsSk --pinnedpubkey &#39;sha256//")
    register = re.search(
        r'aria-label="octo-agent register command"><code>([^<]+)</code>', made.text
    )
    assert register is not None and token.group(1) in register.group(1)
    assert "--token-file - --poll" in register.group(1)
    thumbprint = octo.appliance.server_certificate().thumbprint_sha256_hex
    assert f"--server-thumbprint {thumbprint}" in register.group(1)
    row = RegistrationToken.get()
    assert (row.environments, row.roles, row.max_uses) == ([env_id], ["db", "web"], 2)
    again = client.get(f"/environments/{env_id}/add-target")
    assert token.group(1) not in again.text
    assert token.group(1) not in client.get(f"/environments/{env_id}").text


def test_add_target_errors_stand_next_to_their_field(octo: OctoTestAppliance) -> None:
    client = signed_in(octo)
    env_id = post(client, "/environments", {"name": "Dev"}).headers["location"].split("/")[-1]
    no_role = post(client, f"/environments/{env_id}/add-target", {"mode": "polling"})
    assert no_role.status_code == 422
    assert field_error(no_role.text, "add-roles")
    no_port = post(
        client,
        f"/environments/{env_id}/add-target",
        {"roles": "web", "mode": "listening", "listen_port": "", "max_uses": "3"},
    )
    assert no_port.status_code == 422
    assert "10933" in field_error(no_port.text, "add-port")
    assert re.search(r'<option value="listening" selected>', no_port.text)
    assert 'value="3"' in no_port.text
    assert not RegistrationToken.select().exists()
