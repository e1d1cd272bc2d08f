"""Agent-facing endpoints: registration and on-demand health checks.

``POST /targets/register`` is what ``octo-agent register`` calls, over TLS pinned to the
appliance's thumbprint and with an API key or a registration token: it records the agent's
certificate (the trust anchor its connections are checked against), queues the target's first
health check at once, and answers with what the agent must pin and the public key that signs
the builds it will download (:mod:`octo_appliance.api.builds`). With a token, the install
script also reads the new target's health (``GET /targets/{ref}/registration``) and, on
``--uninstall``, deregisters it (``POST /targets/{ref}/deregister``); both need the target's
thumbprint and a target the token could have registered (:mod:`.registration_scope`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from cryptography import x509
from pydantic import BaseModel, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404, resolve_many
from octo_appliance.api.registration_scope import (
    check_token_covers,
    require_registration,
    require_scope,
    token_defaults,
    use_token,
)
from octo_appliance.api.routing import Handler, Router, json_response
from octo_appliance.api.schemas import (
    ROLE_PATTERN,
    Body,
    Deleted,
    Line,
    Out,
    Ref,
    Role,
    Text,
    name_field,
)
from octo_appliance.api.targets import (
    TargetOut,
    _check_unique,
    _environment_ids,
    _one,
    _require_all,
    _set_links,
    remove_target,
)
from octo_appliance.api.tasks import enqueue_for_request, find_engine
from octo_appliance.background import agent_target_ids
from octo_appliance.builds.manifest import public_key_text
from octo_appliance.comms import thumbprint_of_pem
from octo_appliance.db import Environment, Target
from octo_appliance.engine import health
from octo_appliance.engine.tasks.creation import create_task
from octo_appliance.exceptions import ValidationFailed
from octo_appliance.security.permissions import Permission
from octo_appliance.setting import parse_host_port

router = Router("agents")
THUMBPRINT = r"^[0-9a-fA-F]{64}$"


class RegisterIn(Body):
    name: str = name_field()
    environments: list[Ref] = Field(
        default_factory=list,
        max_length=200,
        description="Needed with an API key; with a registration token, default: the token's.",
    )
    roles: list[Role] = Field(
        default_factory=list,
        max_length=200,
        description="Needed with an API key; with a registration token, default: the token's.",
    )
    communication_style: Literal["listening", "polling"]
    uri: str = Field("", max_length=500, pattern=r"^$|^https://[^\s\x00-\x1f\x7f-\x9f]+:\d+/?$")
    thumbprint: str = Field(pattern=THUMBPRINT)
    certificate: Text = Field(min_length=1, max_length=20_000)
    agent_version: Line = Field("", max_length=40)

    @field_validator("roles")
    @classmethod
    def _roles(cls, roles: list[str]) -> list[str]:
        import re

        pattern = re.compile(ROLE_PATTERN)
        if any(not pattern.match(role) or len(role) > 100 for role in roles):
            raise ValueError("each role is a non-empty name of at most 100 characters")
        return sorted(set(roles))


class RegisteredOut(TargetOut):
    server_thumbprint: str
    server_certificate: str
    #: base64 of the raw Ed25519 public key that signs build manifests
    signing_public_key: str
    polling_address: str


class TaskQueued(Out):
    id: str
    task_id: str


def _polling_address(ctx: RequestContext, request: Request) -> str:
    """Where polling agents dial: the configured host (or the one the agent used for the API)
    and the bound polling port (the configured one before the listener runs)."""
    polling_host, polling_port = parse_host_port(ctx.appliance.config.polling_listen)
    network = ctx.appliance.agent_network
    if network is not None and network.polling_port:
        polling_port = network.polling_port
    host = (request.url.hostname or "localhost").strip("[]")
    if polling_host not in ("0.0.0.0", "::", ""):
        host = polling_host
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{polling_port}"


def _check_certificate(body: RegisterIn) -> str:
    try:
        x509.load_pem_x509_certificate(body.certificate.encode())
    except ValueError:
        raise ValidationFailed(
            "the certificate is not a PEM certificate",
            details=[{"field": "certificate", "message": "send the agent's PEM certificate"}],
        ) from None
    actual = thumbprint_of_pem(body.certificate)
    if actual != body.thumbprint.lower():
        raise ValidationFailed(
            "the thumbprint does not match the certificate",
            details=[{"field": "thumbprint", "message": f"the certificate's is {actual}"}],
        )
    return actual


@router.post(
    "/targets/register",
    summary="Register an agent as a target (used by octo-agent register)",
    body=RegisterIn,
    response=RegisteredOut,
    status_code=201,
    errors=(409, 422),
    raw_response=True,
    registration_token=True,
)
def register_agent(ctx: RequestContext, body: RegisterIn, request: Request) -> Response:
    """Needs ``target.edit`` in every environment named, or a registration token naming them
    (and the roles and communication style); the token is used once."""
    token = ctx.user.registration_token
    if token is None:
        ctx.require(Permission.TARGET_EDIT)
        require_scope(body.environments, body.roles)
    else:
        body.environments, body.roles = token_defaults(token, body.environments, body.roles)
    envs = resolve_many(Environment, body.environments, "environment", "environments")
    if token is None:
        _require_all(ctx, Permission.TARGET_EDIT, [e.id for e in envs])
    else:
        check_token_covers(token, [e.id for e in envs], body.roles, body.communication_style)
    if body.communication_style == "listening" and not body.uri:
        raise ValidationFailed(
            "a listening agent needs its address",
            details=[{"field": "uri", "message": "send https://HOST:PORT the appliance can dial"}],
        )
    thumbprint = _check_certificate(body)
    _check_unique(body.name)
    target = Target.create_new(
        name=body.name,
        communication_style=body.communication_style,
        uri=body.uri if body.communication_style == "listening" else f"poll://{thumbprint}",
        thumbprint=thumbprint,
        certificate=body.certificate,
        agent_version=body.agent_version,
        health_status="Unknown",
    )
    _set_links(target, [e.id for e in envs], body.roles)
    if token is not None:
        use_token(token)
    ctx.audit(
        "register",
        "target",
        target.id,
        target.name,
        {
            "environments": [e.name for e in envs],
            "roles": body.roles,
            "communication_style": body.communication_style,
            "thumbprint": thumbprint,
            **({"registration_token": token} if token else {}),
        },
    )
    ctx.targets_changed()
    _first_health_check(ctx, target, envs[0].id if len(envs) == 1 else None)
    cert = ctx.appliance.server_certificate()
    payload = _one(target) | {
        "server_thumbprint": cert.thumbprint_sha256_hex,
        "server_certificate": cert.cert_file.read_text(encoding="ascii"),
        "signing_public_key": public_key_text(ctx.appliance.signing_key()),
        "polling_address": _polling_address(ctx, request),
    }
    return json_response(payload, 201)


def _first_health_check(ctx: RequestContext, target: Target, environment_id: str | None) -> None:
    """Check a new target at once rather than at the next hourly round; the agent is usually
    started just after it registered, so the check waits for it (``connect_within``). With no
    engine running on this node the task is only queued: the next engine to run claims it."""
    description = f"Health check of {target.name} (registered)"
    arguments = {"target_ids": [target.id], "connect_within": health.FIRST_CHECK_WAIT}
    engine = find_engine(ctx.appliance)
    if engine is not None and engine.started:
        enqueue_for_request(ctx, health.KIND, description, arguments, environment_id=environment_id)
        return
    create_task(
        ctx.appliance.vault,
        health.KIND,
        description,
        arguments,
        environment_id=environment_id,
        created_by_id=ctx.user.user_id,
        created_by_name=ctx.user.username,
    )


class RegistrationOut(Out):
    id: str
    name: str
    communication_style: str
    health_status: str
    agent_version: str


class ThumbprintIn(Body):
    thumbprint: str = Field(pattern=THUMBPRINT, description="The agent certificate's SHA-256.")


class ThumbprintQuery(BaseModel):
    thumbprint: str = Field(pattern=THUMBPRINT, description="The agent certificate's SHA-256.")


def _own_target(method: str, action: str, summary: str, **kw: Any) -> Callable[[Handler], Handler]:
    """``/targets/{ref}/ACTION`` about the caller's own target: an API key, or a registration
    token that could have registered it (the thumbprint names it; 404 for any other)."""
    path = f"/targets/{{ref}}/{action}"
    return router.route(method, path, summary=summary, errors=(404,), registration_token=True, **kw)


STATUS = "A registered target's health, for the install script that registered it"
DEREGISTER = "Delete a target as its agent's uninstall does (API key or registration token)"


@_own_target("GET", "registration", STATUS, query=ThumbprintQuery, response=RegistrationOut)
def registration_status(ctx: RequestContext, ref: str, query: ThumbprintQuery) -> dict[str, Any]:
    """Takes ``target.view`` or a registration token (see ``_own_target``)."""
    target = require_registration(ctx, ref, query.thumbprint, Permission.TARGET_VIEW)
    fields = ("id", "name", "communication_style", "health_status", "agent_version")
    return {name: getattr(target, name) for name in fields}


@_own_target("POST", "deregister", DEREGISTER, body=ThumbprintIn, response=Deleted)
def deregister_agent(ctx: RequestContext, ref: str, body: ThumbprintIn) -> dict[str, Any]:
    """Takes ``target.edit`` or a registration token, never a stranger's target."""
    target = require_registration(ctx, ref, body.thumbprint, Permission.TARGET_EDIT)
    remove_target(target)
    ctx.audit("deregister", "target", target.id, target.name, {"thumbprint": target.thumbprint})
    ctx.targets_changed()
    return {"id": target.id, "deleted": True}


@router.post(
    "/targets/{ref}/health-check",
    summary="Check a target's health now (queues a health-check task)",
    response=TaskQueued,
    status_code=202,
    errors=(503,),
)
def check_target_health(ctx: RequestContext, ref: str) -> dict[str, Any]:
    target = get_or_404(Target, ref, "target")
    env_ids = _environment_ids(target)
    _require_all(ctx, Permission.TARGET_VIEW, env_ids)
    task_id = enqueue_for_request(
        ctx,
        health.KIND,
        f"Health check of {target.name}",
        {"target_ids": [target.id]},
        environment_id=env_ids[0] if len(env_ids) == 1 else None,
    )
    ctx.audit("health-check", "target", target.id, target.name, {"task_id": task_id})
    return {"id": task_id, "task_id": task_id}


@router.post(
    "/targets/health-check",
    summary="Check every agent target's health now",
    response=TaskQueued,
    status_code=202,
    errors=(503,),
)
def check_all_health(ctx: RequestContext) -> dict[str, Any]:
    ctx.require_unscoped(Permission.TARGET_EDIT)
    task_id = enqueue_for_request(
        ctx, health.KIND, "Health check of every agent target", {"target_ids": agent_target_ids()}
    )
    ctx.audit("health-check", "task", task_id, "all agent targets")
    return {"id": task_id, "task_id": task_id}
