"""Agent-facing endpoints: registration and on-demand health checks.

``POST /targets/register`` is what ``octo-agent register`` calls, over TLS pinned to the
appliance's thumbprint and with an API key: it records the agent's certificate (the trust
anchor its connections are checked against) and answers with what the agent must pin, and
the public key that signs the builds it will download (:mod:`octo_appliance.api.builds`).
"""

from __future__ import annotations

from typing import Any, Literal

from cryptography import x509
from pydantic import Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404, resolve_many
from octo_appliance.api.routing import Router, json_response
from octo_appliance.api.schemas import ROLE_PATTERN, Body, Line, Out, Ref, Role, Text, name_field
from octo_appliance.api.targets import (
    TargetOut,
    _check_unique,
    _environment_ids,
    _one,
    _require_all,
    _set_links,
)
from octo_appliance.api.tasks import enqueue_for_request
from octo_appliance.builds.manifest import public_key_text
from octo_appliance.comms import thumbprint_of_pem
from octo_appliance.config import parse_host_port
from octo_appliance.db import Environment, Target
from octo_appliance.engine import health
from octo_appliance.exceptions import ValidationFailed
from octo_appliance.security.permissions import Permission
from octo_appliance.services import agent_target_ids

router = Router("agents")


class RegisterIn(Body):
    name: str = name_field()
    environments: list[Ref] = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1, max_length=200)
    communication_style: Literal["listening", "polling"]
    uri: str = Field("", max_length=500, pattern=r"^$|^https://[^\s\x00-\x1f\x7f-\x9f]+:\d+/?$")
    thumbprint: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
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
)
def register_agent(ctx: RequestContext, body: RegisterIn, request: Request) -> Response:
    """Needs ``target.edit`` in every environment named."""
    ctx.require(Permission.TARGET_EDIT)
    envs = resolve_many(Environment, body.environments, "environment", "environments")
    _require_all(ctx, Permission.TARGET_EDIT, [e.id for e in envs])
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
        },
    )
    ctx.targets_changed()
    cert = ctx.appliance.server_certificate()
    payload = _one(target) | {
        "server_thumbprint": cert.thumbprint_sha256_hex,
        "server_certificate": cert.cert_file.read_text(encoding="ascii"),
        "signing_public_key": public_key_text(ctx.appliance.signing_key()),
        "polling_address": _polling_address(ctx, request),
    }
    return json_response(payload, 201)


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
