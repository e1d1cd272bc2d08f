"""Every endpoint in the registry against every built-in role: who gets 401, 403 or in.

The table below names, per path prefix, the permission a read (GET) and a write (anything
else) needs. It is matched by the longest prefix, so a new endpoint under an existing
collection is checked at once against that collection's permissions, and a new collection
makes the test fail until someone writes down who may use it. ``auth=False`` endpoints must be
listed as public explicitly.

For each endpoint and caller the test builds a concrete path (path parameters replaced by ids
of rows made for the purpose) and, for writes, a body generated from the endpoint's own schema
(reference fields get real ids: tests/api/matrix_requests.py), then checks:

- no credentials: 401 (public endpoints: not 401);
- a caller whose roles lack the permission: 403; one whose roles hold it: 2xx;
- nothing is ever a 5xx;
- every successful write left an audit event naming the caller and the resource.
"""

from __future__ import annotations

from typing import Any

import pytest

from octo_appliance.api import all_endpoints
from octo_appliance.api.routing import Endpoint
from octo_appliance.builds.serving import AgentBuilds
from octo_appliance.db import (
    AuditEvent,
    User,
)
from octo_appliance.security.permissions import ROLES, Permission
from tests.api.deploy_support import held_engine
from tests.api.helpers import make_user, session_client
from tests.api.matrix_requests import (
    PASSWORD,
    PATH_PARAM,
    PUBLIC,
    REQUESTS,
    SIGNED_IN,
    Caller,
    Fixtures,
    NoExample,
    build_body,
    build_path,
    label,
)
from tests.builds.support import put_stand_in

P = Permission

#: path prefix (parameters written ``{}``) -> (what a GET needs, what any other method needs);
#: ``None`` means no such endpoint is expected, so one appearing fails until it gets a rule.
RULES: dict[str, tuple[Any, Any]] = {
    "/health": (PUBLIC, None),
    "/openapi.json": (PUBLIC, None),
    "/auth/login": (None, PUBLIC),
    "/auth/logout": (None, SIGNED_IN),
    "/environments": (P.ENVIRONMENT_VIEW, P.ENVIRONMENT_EDIT),
    "/targets": (P.TARGET_VIEW, P.TARGET_EDIT),
    "/projects": (P.PROJECT_VIEW, P.PROJECT_EDIT),
    "/projects/{}/variables": (P.VARIABLE_VIEW, P.VARIABLE_EDIT),
    "/users": (P.USER_VIEW, P.USER_EDIT),
    "/users/me": (SIGNED_IN, SIGNED_IN),
    "/teams": (P.TEAM_VIEW, P.TEAM_EDIT),
    "/roles": (SIGNED_IN, None),
    "/api-keys": (SIGNED_IN, SIGNED_IN),
    "/registration-tokens": (SIGNED_IN, P.TARGET_EDIT),
    "/audit": (P.AUDIT_VIEW, None),
    "/plugins": (P.SYSTEM_VIEW, None),
    "/step-types": (P.PROJECT_VIEW, None),
    "/transports": (P.TARGET_VIEW, None),
    "/tasks": (P.TASK_VIEW, P.TASK_CANCEL),
    "/targets/register": (None, P.TARGET_EDIT),
    "/targets/health-check": (None, P.TARGET_EDIT),
    "/targets/{}/health-check": (None, P.TARGET_VIEW),
    "/targets/{}/registration": (P.TARGET_VIEW, None),
    "/targets/{}/deregister": (None, P.TARGET_EDIT),
    "/runner": (P.SYSTEM_VIEW, None),
    "/agent": (PUBLIC, None),
    "/agent/install-command": (None, P.TARGET_EDIT),
    "/scripts": (None, P.SCRIPT_RUN),
    "/lifecycles": (P.PROJECT_VIEW, P.PROJECT_EDIT),
    "/library-variable-sets": (P.VARIABLE_VIEW, P.VARIABLE_EDIT),
    "/projects/{}/process": (P.PROJECT_VIEW, P.PROJECT_EDIT),
    "/projects/{}/releases": (P.PROJECT_VIEW, P.DEPLOYMENT_CREATE),
    "/releases": (P.PROJECT_VIEW, P.PROJECT_EDIT),
    "/releases/{}/snapshot-variables": (None, P.DEPLOYMENT_CREATE),
    "/deployments": (P.PROJECT_VIEW, P.DEPLOYMENT_CREATE),
    "/interruptions": (P.PROJECT_VIEW, P.DEPLOYMENT_CREATE),
    "/dashboard": (P.PROJECT_VIEW, None),
    "/packages": (P.PACKAGE_VIEW, P.PACKAGE_PUSH),
    "/packages/{}/{}": (P.PACKAGE_VIEW, P.PACKAGE_DELETE),
    "/nodes": (P.SYSTEM_VIEW, P.SYSTEM_EDIT),
}

CALLER_ROLES = ("viewer", "project-deployer", "administrator")


def template(endpoint: Endpoint) -> str:
    return PATH_PARAM.sub("{}", endpoint.path)


def rule_for(endpoint: Endpoint) -> Any:
    """The access an endpoint needs, from the longest matching prefix (KeyError: none)."""
    path = template(endpoint)
    matches = [p for p in RULES if path == p or path.startswith(p + "/")]
    if not matches:
        raise KeyError(path)
    read, write = RULES[max(matches, key=len)]
    access = read if endpoint.method == "GET" else write
    if access is None:
        raise KeyError(path)
    return access


def test_every_endpoint_has_a_rule() -> None:
    missing, wrong_public = [], []
    for endpoint in all_endpoints():
        try:
            access = rule_for(endpoint)
        except KeyError:
            missing.append(label(endpoint))
            continue
        if (access == PUBLIC) != (not endpoint.auth):
            wrong_public.append(f"{label(endpoint)}: auth={endpoint.auth}, rule={access}")
    assert not missing, f"add these endpoints to RULES in {__file__}: {missing}"
    assert not wrong_public, f"public in the table iff auth=False: {wrong_public}"


def test_rule_table_matches_role_definitions() -> None:
    """The roles the matrix relies on exist and differ as the table assumes."""
    assert set(CALLER_ROLES) <= set(ROLES)
    viewer = ROLES["viewer"][1]
    assert all(not str(p).endswith(".edit") for p in viewer)
    assert ROLES["administrator"][1] == frozenset(Permission)


# ---------------------------------------------------------------- the matrix


# ---------------------------------------------------------------- the matrix


def make_callers(octo: Any) -> list[Caller]:
    callers = [Caller("anonymous", None, None, ())]
    for role in (None, *CALLER_ROLES):
        username = f"mx-{role or 'no-team'}"
        key = make_user(octo, username, role, password=PASSWORD)
        user = User.get(User.username == username)
        callers.append(Caller(role or "no-team", key, user.id, (role,) if role else ()))
    return callers


def check_endpoint(octo: Any, client: Any, endpoint: Endpoint, callers: list[Caller]) -> list[str]:
    access = rule_for(endpoint)
    problems: list[str] = []
    for caller in callers:
        fx = Fixtures(caller, endpoint=endpoint, octo=octo)
        try:
            path, ids = build_path(endpoint, fx)
            body = build_body(octo, endpoint, fx)
        except NoExample as exc:
            return [f"{label(endpoint)}: {exc}; add a body to BODIES"]
        headers = {"X-Api-Key": caller.key} if caller.key else {}
        before = {event.id for event in AuditEvent.select(AuditEvent.id)}
        custom = REQUESTS.get((endpoint.method, endpoint.path))
        arguments = (
            custom(octo, fx)
            if custom is not None
            else {"json": body if endpoint.body is not None else None}
        )
        response = client.request(endpoint.method, "/api/v1" + path, headers=headers, **arguments)
        client.cookies.clear()  # a login must not turn later anonymous calls into sessions
        status = response.status_code
        allowed = caller.allowed(access)
        where = f"{label(endpoint)} as {caller.name} (needs {access})"
        if status >= 500:
            problems.append(f"{where}: {status} {response.text[:200]}")
        elif caller.key is None and access != PUBLIC:
            if status != 401:
                problems.append(f"{where}: expected 401, got {status}")
        elif not allowed and status != 403:
            problems.append(f"{where}: expected 403, got {status} {response.text[:200]}")
        elif allowed and not 200 <= status < 300:
            problems.append(f"{where}: expected success, got {status} {response.text[:300]}")
        elif allowed and endpoint.method != "GET":
            problems += audit_problems(where, caller, access, response, ids, before)
        if endpoint.method == "GET" and AuditEvent.select().count() != len(before):
            problems.append(f"{where}: a read wrote to the audit log")
    return problems


def audit_problems(
    where: str, caller: Caller, access: Any, response: Any, ids: set[str], before: set[str]
) -> list[str]:
    new = [event for event in AuditEvent.select() if event.id not in before]
    if not new:
        return [f"{where}: the write left no audit event"]
    created = (
        response.json().get("id") if "json" in response.headers.get("content-type", "") else None
    )
    targets = ids | {created, caller.user_id} - {None}
    for event in new:
        named = event.resource_id in targets or (access == PUBLIC and event.resource_id)
        by_caller = access == PUBLIC or event.user_id == caller.user_id
        if named and by_caller and event.action and event.resource_type:
            return []
    summary = [(e.user_id, e.action, e.resource_type, e.resource_id) for e in new]
    return [f"{where}: no audit event names the caller and the resource {targets}: {summary}"]


@pytest.fixture
def task_engine(octo):  # type: ignore[no-untyped-def]
    """A running engine for the endpoints that queue tasks. Its handlers hold every task it
    claims until the test ends, so a queued task stays cancelable (queued or executing)."""
    with held_engine(octo, kinds=("deployment", "script", "health-check")) as held:
        yield held


@pytest.fixture
def agent_build(octo, tmp_path):  # type: ignore[no-untyped-def]
    """A (stand-in) agent build to serve: the public agent endpoints then answer 200."""
    put_stand_in(tmp_path / "agent-builds")
    octo.appliance._agent_builds = AgentBuilds(tmp_path / "agent-builds", build_on_request=False)


@pytest.mark.parametrize("batch", ["read", "write"])
def test_permission_matrix(octo, task_engine, agent_build, batch):
    """Reads and writes run as two tests so a failure report stays readable."""
    client = session_client(octo)
    callers = make_callers(octo)
    endpoints = [e for e in all_endpoints() if (e.method == "GET") == (batch == "read")]
    assert endpoints
    problems: list[str] = []
    for endpoint in endpoints:
        problems += check_endpoint(octo, client, endpoint, callers)
    assert not problems, "\n".join(problems)
