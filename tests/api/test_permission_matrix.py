"""Every endpoint in the registry against every built-in role: who gets 401, 403 or in.

The table below names, per path prefix, the permission a read (GET) and a write (anything
else) needs. It is matched by the longest prefix, so a new endpoint under an existing
collection is checked at once against that collection's permissions, and a new collection
makes the test fail until someone writes down who may use it. ``auth=False`` endpoints must be
listed as public explicitly.

For each endpoint and caller the test builds a concrete path (path parameters replaced by ids
of rows made for the purpose) and, for writes, a body generated from the endpoint's own schema
(reference fields get real ids), then checks:

- no credentials: 401 (public endpoints: not 401);
- a caller whose roles lack the permission: 403; one whose roles hold it: 2xx;
- nothing is ever a 5xx;
- every successful write left an audit event naming the caller and the resource.
"""

from __future__ import annotations

import datetime
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest

from octo_appliance.api import all_endpoints
from octo_appliance.api.routing import Endpoint
from octo_appliance.builds.serving import AgentBuilds
from octo_appliance.comms import generate_identity, thumbprint_of_pem
from octo_appliance.db import (
    AuditEvent,
    Deployment,
    Environment,
    Interruption,
    LibraryVariableSet,
    Lifecycle,
    Node,
    Project,
    Release,
    ServerTask,
    Target,
    TargetEnvironment,
    TargetRole,
    Team,
    User,
    Variable,
)
from octo_appliance.db.api_keys import create_api_key
from octo_appliance.db.packages import Package
from octo_appliance.db.registration_tokens import create_registration_token
from octo_appliance.feed.names import PackageName
from octo_appliance.feed.records import save_package
from octo_appliance.feed.sealed_files import store_bytes
from octo_appliance.security.permissions import ROLES, Permission
from tests.api.deploy_support import held_engine
from tests.api.helpers import make_user, session_client
from tests.builds.support import put_stand_in
from tests.packages_support import zip_bytes

PUBLIC = "public"  # no authentication at all
SIGNED_IN = "signed-in"  # any authenticated user (self-service)
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

#: the collection a path parameter follows -> the kind of row it names
COLLECTIONS = {
    "environments": "environment",
    "targets": "target",
    "projects": "project",
    "variables": "variable",
    "users": "user",
    "teams": "team",
    "api-keys": "api-key",
    "registration-tokens": "registration-token",
    "tasks": "task",
    "lifecycles": "lifecycle",
    "library-variable-sets": "library-set",
    "releases": "release",
    "deployments": "deployment",
    "interruptions": "interruption",
    "nodes": "node",
}

#: path parameters named for a field of a row rather than following a collection:
#: (first path segment, parameter) -> (kind of row, the row's attribute that fills it)
NAMED_PARAMS = {
    ("packages", "package_id"): ("package", "package_id"),
    ("packages", "version"): ("package", "version"),
}

#: body fields that reference other resources get real ids of this kind
REFERENCE_FIELDS = {
    "environment": "environment",
    "environments": "environment",
    "project": "project",
    "projects": "project",
    "target": "target",
    "targets": "target",
    "user": "user",
    "users": "user",
    "members": "user",
    "team": "team",
    "teams": "team",
    "release": "release",
    "lifecycle": "lifecycle",
    "library_sets": "library-set",
}

CALLER_ROLES = ("viewer", "project-deployer", "administrator")
PASSWORD = "matrix-password-1"

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def template(endpoint: Endpoint) -> str:
    return _PARAM.sub("{}", endpoint.path)


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


def label(endpoint: Endpoint) -> str:
    return f"{endpoint.method} {endpoint.path}"


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


@dataclass
class Caller:
    name: str
    key: str | None
    user_id: str | None
    roles: tuple[str, ...]
    password: str = PASSWORD

    def allowed(self, access: Any) -> bool:
        if access == PUBLIC:
            return True
        if self.key is None:
            return False
        if access == SIGNED_IN:
            return True
        return any(access in ROLES[role][1] for role in self.roles)


@dataclass
class Fixtures:
    """Rows for path parameters and body references, made on demand, one of each kind."""

    caller: Caller
    made: dict[str, str] = field(default_factory=dict)
    endpoint: Endpoint | None = None
    octo: Any = None

    def id_of(self, kind: str) -> str:
        if kind not in self.made:
            self.made[kind] = self._make(kind)
        return self.made[kind]

    def _make(self, kind: str) -> str:
        name = f"mx-{kind}-{secrets.token_hex(4)}"
        if kind == "environment":
            return str(Environment.create_new(name=name).id)
        if kind == "project":
            return str(Project.create_new(name=name).id)
        if kind == "target":  # polling: it has an agent (update-agent answers for it)
            target = Target.create_new(
                name=name, communication_style="polling", uri=f"poll://{secrets.token_hex(32)}"
            )
            TargetEnvironment.create_new(target=target, environment=self.id_of("environment"))
            TargetRole.create_new(target=target, role="web")
            return str(target.id)
        if kind == "variable":
            variable = Variable.create_new(project=self.id_of("project"), name=name, value="x")
            return str(variable.id)
        if kind == "user":
            return str(User.create_new(username=name).id)
        if kind == "team":
            return str(Team.create_new(name=name).id)
        if kind == "task":
            # a write (cancel) needs an unfinished task; reads get a finished one, so that its
            # log stream ends instead of following a task no engine runs here
            write = self.endpoint is not None and self.endpoint.method != "GET"
            state = "queued" if write else "success"
            return str(ServerTask.create_new(kind="script", description=name, state=state).id)
        if kind == "lifecycle":
            phase = {"name": "All", "environments": [self.id_of("environment")]}
            return str(Lifecycle.create_new(name=name, phases=[phase]).id)
        if kind == "library-set":
            return str(LibraryVariableSet.create_new(name=name).id)
        if kind == "release":
            # deployable to the fixture environment: the first phase of its lifecycle
            phase = {"name": "All", "environments": [self.id_of("environment")]}
            release = Release.create_new(
                project=self.id_of("project"),
                version=f"1.0.{len(self.made)}",
                lifecycle_snapshot=[phase],
            )
            return str(release.id)
        if kind == "deployment":
            task = ServerTask.create_new(kind="deployment", description=name, state="success")
            deployment = Deployment.create_new(
                release=self.id_of("release"),
                project=self.id_of("project"),
                environment=self.id_of("environment"),
                task_id=task.id,
                state="success",
            )
            return str(deployment.id)
        if kind == "interruption":
            interruption = Interruption.create_new(
                task_id="tsk_000000000000",
                kind="manual-intervention",
                title=name,
                options=["approve", "reject"],
                project_id=self.id_of("project"),
                environment_id=self.id_of("environment"),
            )
            return str(interruption.id)
        if kind == "package":
            appliance = self.octo.appliance
            name = PackageName("mx-pkg", f"1.0.{secrets.randbelow(10**9)}", "zip")
            received = store_bytes(appliance.vault, appliance.data_dir, name, MATRIX_ZIP)
            return str(
                save_package(
                    appliance.data_dir, received, replace=False, uploaded_by="x"
                ).package.id
            )
        if kind == "node":
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            node = Node.create_new(name=name, started_at=now, heartbeat_at=now)
            return str(node.id)
        if kind == "api-key":
            # the caller's own spare key: self-service endpoints act on the caller's rows
            owner = User.get_by_id(self.caller.user_id or self.id_of("user"))
            return str(create_api_key(owner, name)[0].id)
        if kind == "registration-token":
            owner = User.get_by_id(self.caller.user_id or self.id_of("user"))
            return str(
                create_registration_token(
                    owner,
                    name=name,
                    environments=[self.id_of("environment")],
                    roles=["web"],
                    mode="any",
                    max_uses=1,
                    expires_in=datetime.timedelta(hours=1),
                )[0].id
            )
        raise AssertionError(f"no fixture for '{kind}': teach Fixtures._make to create one")


class NoExample(Exception):
    """The schema needs a value the generator cannot make: add an entry to BODIES."""


def example(schema: dict[str, Any], defs: dict[str, Any], name: str, fx: Fixtures) -> Any:
    """A minimal valid instance of a JSON schema: required fields only, real references."""
    if "$ref" in schema:
        return example(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, name, fx)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return example(options[0], defs, name, fx) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", [])
        props = schema.get("properties", {})
        return {key: example(props[key], defs, key, fx) for key in required}
    if kind == "array":
        count = schema.get("minItems", 0)
        return [example(schema.get("items", {}), defs, name, fx) for _ in range(count)]
    if kind == "string":
        if name in REFERENCE_FIELDS:
            return fx.id_of(REFERENCE_FIELDS[name])
        value = f"mx{secrets.token_hex(5)}"[: schema.get("maxLength", 100)]
        pattern = schema.get("pattern")
        if len(value) < schema.get("minLength", 0) or (pattern and not re.search(pattern, value)):
            raise NoExample(f"field '{name}' needs a string like {pattern!r}")
        return value
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    raise NoExample(f"field '{name}' has a schema the generator does not know: {schema}")


#: (method, path) -> body builder, for bodies a schema alone cannot make valid
def _agent_registration(octo: Any, fx: Fixtures) -> dict[str, Any]:
    identity = generate_identity(f"mx-agent-{secrets.token_hex(4)}")
    return {
        "name": f"mx{secrets.token_hex(5)}",
        "environments": [fx.id_of("environment")],
        "roles": ["web"],
        "communication_style": "polling",
        "thumbprint": thumbprint_of_pem(identity.cert_pem),
        "certificate": identity.cert_pem.decode(),
    }


MATRIX_ZIP = zip_bytes({"index.html": b"<html/>"})
MATRIX_THUMBPRINT = "ab" * 32


def _thumbprint_of_target(fx: Fixtures) -> dict[str, str]:
    """The fixture target gets a thumbprint, which the agents' own endpoints must be sent."""
    Target.update(thumbprint=MATRIX_THUMBPRINT).where(Target.id == fx.id_of("target")).execute()
    return {"thumbprint": MATRIX_THUMBPRINT}


#: (method, path) -> request arguments, for bodies that are not JSON
REQUESTS: dict[tuple[str, str], Any] = {
    ("GET", "/targets/{ref}/registration"): lambda octo, fx: {"params": _thumbprint_of_target(fx)},
    ("POST", "/packages"): lambda octo, fx: {
        "files": {"file": (f"mx-pkg.2.0.{secrets.randbelow(10**9)}.zip", MATRIX_ZIP)}
    },
}

BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/targets/{ref}/deregister"): lambda octo, fx: _thumbprint_of_target(fx),
    ("POST", "/targets/register"): _agent_registration,
    ("POST", "/scripts"): lambda octo, fx: {
        "targets": [fx.id_of("target")],
        "syntax": "bash",
        "body": "true",
    },
    ("POST", "/auth/login"): lambda octo, fx: {
        "username": "admin",
        "password": octo.admin_password,
    },
    ("POST", "/users/me/password"): lambda octo, fx: {
        "current_password": fx.caller.password,
        "new_password": PASSWORD + "-new",
    },
}


def build_body(octo: Any, endpoint: Endpoint, fx: Fixtures) -> Any:
    if endpoint.body is None:
        return None
    custom = BODIES.get((endpoint.method, endpoint.path))
    if custom is not None:
        return custom(octo, fx)
    schema = endpoint.body.model_json_schema()
    return example(schema, schema.get("$defs", {}), "", fx)


def build_path(endpoint: Endpoint, fx: Fixtures) -> tuple[str, set[str]]:
    """The concrete path and the ids it names."""
    segments = endpoint.path.strip("/").split("/")
    ids: set[str] = set()
    for index, segment in enumerate(segments):
        match = _PARAM.fullmatch(segment)
        if match and (segments[0], match[1]) in NAMED_PARAMS:
            kind, attribute = NAMED_PARAMS[(segments[0], match[1])]
            row_id = fx.id_of(kind)
            segments[index] = str(getattr(Package.get_by_id(row_id), attribute))
            ids.add(row_id)
        elif match:
            collection = segments[index - 1] if index else ""
            if collection not in COLLECTIONS:
                raise AssertionError(
                    f"{label(endpoint)}: no fixture for a parameter after '{collection}'; "
                    "add it to COLLECTIONS"
                )
            segments[index] = fx.id_of(COLLECTIONS[collection])
            ids.add(segments[index])
    return "/" + "/".join(segments), ids


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
