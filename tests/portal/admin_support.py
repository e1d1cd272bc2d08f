"""What the administration pages' tests share: a signed-in client, posting a form with the
session's CSRF token, a target placed in an environment, and a user with a role."""

from __future__ import annotations

import re
from typing import Any

from octo_appliance.api.auth import CSRF_COOKIE
from octo_appliance.testing import OctoTestAppliance
from tests.api.helpers import make_user
from tests.portal.support import sign_in


def signed_in(octo: OctoTestAppliance, username: str = "admin", password: str = "") -> Any:
    client = octo.client
    client.cookies.clear()
    answer = sign_in(client, username, password or octo.admin_password)
    assert answer.status_code == 303, answer.text
    return client


def post(client: Any, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    """A form post as the portal's own forms make it: the CSRF token in its hidden field."""
    fields = {"csrf_token": client.cookies.get(CSRF_COOKIE, ""), **(data or {})}
    return client.post(path, data=fields, follow_redirects=False, **kw)


def user_with_role(octo: OctoTestAppliance, name: str, role: str, **scope: Any) -> str:
    password = f"{name}-password-1"
    make_user(octo, name, role, password=password, **scope)
    return password


def field_error(html: str, field_id: str) -> str:
    """The error shown next to a field (the ``<p>`` its ``aria-describedby`` names)."""
    assert re.search(rf'id="{field_id}"[^>]*aria-invalid="true"', html), f"{field_id} not invalid"
    found = re.search(rf'<p class="field-error" id="{field_id}-error">([^<]*)</p>', html)
    assert found, f"no error next to {field_id}"
    return found.group(1)


def make_target(octo: OctoTestAppliance, name: str, env: str, roles: list[str]) -> str:
    body = {"name": name, "environments": [env], "roles": roles, "communication_style": "none"}
    answer = octo.api.post("/targets", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])
