"""How the permission matrix (tests/api/test_permission_matrix.py) builds its requests:
the callers, a concrete path for an endpoint (path parameters replaced by ids of rows made for
the purpose) and, for writes, a body generated from the endpoint's own schema, with reference
fields given real ids."""

from __future__ import annotations

import datetime
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from octo_appliance.api.routing import Endpoint
from octo_appliance.comms import generate_identity, thumbprint_of_pem
from octo_appliance.db import (
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
from octo_appliance.security.permissions import ROLES
from tests.packages_support import zip_bytes

PUBLIC = "public"  # no authentication at all
SIGNED_IN = "signed-in"  # any authenticated user (self-service)
PASSWORD = "matrix-password-1"

PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def label(endpoint: Endpoint) -> str:
    return f"{endpoint.method} {endpoint.path}"


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
        match = PATH_PARAM.fullmatch(segment)
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
