"""``/registration-tokens``: tokens that register targets in their scope and do nothing else."""

from __future__ import annotations

import datetime
import re
import secrets
from typing import Any

import pytest

from octo_appliance.api import all_endpoints
from octo_appliance.comms import generate_identity
from octo_appliance.db import RegistrationToken, ServerTask, utcnow
from octo_appliance.security.passwords import token_hash
from tests.api.helpers import all_audit_text, client_as, events, make_user


@pytest.fixture
def envs(api: Any) -> dict[str, str]:
    made = {}
    for name in ("Dev", "Prod"):
        response = api.post("/environments", json={"name": name})
        assert response.status_code == 201, response.text
        made[name] = response.json()["id"]
    return made


def new_token(api: Any, **body: Any) -> dict[str, Any]:
    body = {"environments": ["Dev"], "roles": ["web"], **body}
    response = api.post("/registration-tokens", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def registration(
    name: str = "", *, environments: tuple[str, ...] = ("Dev",), roles: tuple[str, ...] = ("web",)
) -> dict[str, Any]:
    identity = generate_identity(f"agent-{secrets.token_hex(4)}")
    return {
        "name": name or f"t-{secrets.token_hex(4)}",
        "environments": list(environments),
        "roles": list(roles),
        "communication_style": "polling",
        "thumbprint": identity.thumbprint,
        "certificate": identity.cert_pem.decode(),
    }


def test_create_register_list_revoke(octo: Any, api: Any, envs: dict[str, str]) -> None:
    created = new_token(api, name="web boxes", max_uses=2, expires_in=600)
    token = created["token"]
    assert token.startswith("OCTOREG-")
    assert created["environments"] == [{"id": envs["Dev"], "name": "Dev"}]
    stored = RegistrationToken.get_by_id(created["id"])
    assert stored.token_hash == token_hash(token)  # only the hash is kept
    assert token not in (stored.token_hash, stored.prefix)

    agent = client_as(octo, token)
    first = agent.post("/targets/register", json=registration("web-1"))
    assert first.status_code == 201, first.text
    listed = api.get("/registration-tokens").json()
    assert listed["total"] == 1 and listed["items"][0]["uses"] == 1
    assert token not in str(listed)

    (event,) = events(action="register", resource_id=first.json()["id"])
    assert event.details["registration_token"] == created["id"]
    assert "(registration token" in event.username
    assert [e.action for e in events(resource_type="registration-token")] == ["create"]

    assert api.delete(f"/registration-tokens/{created['id']}").json()["deleted"] is True
    refused = agent.post("/targets/register", json=registration("web-2"))
    assert refused.status_code == 401
    assert "not valid" in refused.json()["error"]["message"]
    assert token not in all_audit_text()
    assert [e.action for e in events(resource_type="registration-token")] == ["create", "delete"]


def test_a_registration_queues_a_health_check_at_once(
    octo: Any, api: Any, envs: dict[str, str]
) -> None:
    agent = client_as(octo, new_token(api)["token"])
    target_id = agent.post("/targets/register", json=registration()).json()["id"]
    (task,) = ServerTask.select().where(ServerTask.kind == "health-check")
    assert task.arguments["target_ids"] == [target_id]
    assert task.arguments["connect_within"] > 0


def test_used_up_and_expired_tokens_are_refused(octo: Any, api: Any, envs: dict[str, str]) -> None:
    once = client_as(octo, new_token(api, max_uses=1)["token"])
    assert once.post("/targets/register", json=registration()).status_code == 201
    used_up = once.post("/targets/register", json=registration())
    assert used_up.status_code == 401
    assert "used up" in used_up.json()["error"]["message"]

    created = new_token(api)
    RegistrationToken.update(expires_at=utcnow() - datetime.timedelta(seconds=1)).where(
        RegistrationToken.id == created["id"]
    ).execute()
    expired = client_as(octo, created["token"]).post("/targets/register", json=registration())
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]


@pytest.mark.parametrize(
    ("token", "asked", "message"),
    [
        ({}, {"environments": ("Prod",)}, "does not cover the environment"),
        ({}, {"roles": ("web", "db")}, "does not allow the role(s) db"),
    ],
)
def test_a_token_registers_only_within_its_scope(
    octo: Any,
    api: Any,
    envs: dict[str, str],
    token: dict[str, Any],
    asked: dict[str, Any],
    message: str,
) -> None:
    agent = client_as(octo, new_token(api, **token)["token"])
    response = agent.post("/targets/register", json=registration(**asked))
    assert response.status_code == 403
    assert message in response.json()["error"]["message"]
    assert RegistrationToken.get().uses == 0


def test_a_token_for_listening_agents_refuses_a_polling_one(
    octo: Any, api: Any, envs: dict[str, str]
) -> None:
    agent = client_as(octo, new_token(api, mode="listening")["token"])
    response = agent.post("/targets/register", json=registration())
    assert response.status_code == 403
    assert "for listening agents" in response.json()["error"]["message"]


def test_every_other_endpoint_answers_401_to_a_token(
    octo: Any, api: Any, envs: dict[str, str]
) -> None:
    token = new_token(api, max_uses=5)["token"]
    agent = client_as(octo, token)
    checked = 0
    for endpoint in all_endpoints():
        if endpoint.registration_token or not endpoint.auth:
            continue
        path = re.sub(r"{\w+(:\w+)?}", "x", endpoint.path)
        response = agent.request(endpoint.method, path, json={})
        assert response.status_code == 401, (endpoint.method, endpoint.path, response.text)
        assert "can only register targets" in response.json()["error"]["message"]
        checked += 1
    assert checked > 50
    accepting = {e.path for e in all_endpoints() if e.registration_token}
    assert accepting == {
        "/targets/register",
        "/targets/{ref}/registration",
        "/targets/{ref}/deregister",
    }


def test_a_token_reads_and_deregisters_only_its_own_kind_of_target(
    octo: Any, api: Any, envs: dict[str, str]
) -> None:
    agent = client_as(octo, new_token(api, max_uses=1)["token"])
    body = registration("mine")
    target_id = agent.post("/targets/register", json=body).json()["id"]
    thumbprint = body["thumbprint"]
    status = agent.get(f"/targets/{target_id}/registration", params={"thumbprint": thumbprint})
    assert status.status_code == 200, status.text  # a used-up token still reads its target
    assert status.json()["health_status"] == "Unknown"
    wrong = agent.get(f"/targets/{target_id}/registration", params={"thumbprint": "0" * 64})
    assert wrong.status_code == 404

    prod_target = {"name": "prod-1", "environments": ["Prod"], "roles": ["web"]}
    prod = api.post("/targets", json=prod_target | {"thumbprint": "ab" * 32}).json()
    stranger = agent.post(f"/targets/{prod['id']}/deregister", json={"thumbprint": "ab" * 32})
    assert stranger.status_code == 404
    gone = agent.post(f"/targets/{target_id}/deregister", json={"thumbprint": thumbprint})
    assert gone.json() == {"id": target_id, "deleted": True}
    assert api.get(f"/targets/{target_id}").status_code == 404
    assert [e.action for e in events(resource_id=target_id)] == ["register", "deregister"]


def test_a_viewer_may_not_create_tokens(octo: Any, envs: dict[str, str]) -> None:
    viewer = client_as(octo, make_user(octo, "vic", "viewer"))
    response = viewer.post("/registration-tokens", json={"environments": ["Dev"], "roles": ["w"]})
    assert response.status_code == 403
