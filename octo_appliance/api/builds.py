"""What targets download: the octo-agent executable and the runner zipapp, each with a manifest
signed by the appliance's Ed25519 key (:mod:`octo_appliance.builds.manifest`).

The agent endpoints need no API key: builds are not secret, and a machine that has no agent
yet has no credential either (the bootstrap script fetches them with ``curl`` pinned to the
appliance's certificate). They are served like every endpoint, only over the appliance's own
TLS (it has no plain-HTTP listener). What makes a download trustworthy is the pin on the
connection plus the manifest's SHA-256 and signature, which the agent checks with the public
key it received at registration. The runner endpoints stay behind ``system.view`` as before
(agents fetch the runner over their comms connection, not here).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Out
from octo_appliance.builds.agent import LINUX_X86_64, PLATFORMS, AgentBuild, BuildError
from octo_appliance.builds.manifest import sign
from octo_appliance.exceptions import NotFound, ServiceUnavailable
from octo_appliance.security.permissions import Permission

router = Router("builds")

RUNNER_COMPONENT = "octo-runner"
#: the runner is a pure-Python zipapp: one build for every platform
RUNNER_PLATFORM = "any"
#: seconds a client waits before asking again while a development install builds the agent
BUILD_RETRY_AFTER = 15
DOWNLOAD_CONTENT = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


class PlatformQuery(BaseModel):
    """``?platform=linux-x86_64``: which build (the only one today, and the default)."""

    model_config = ConfigDict(extra="ignore")

    platform: str = Field(
        LINUX_X86_64,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
        description="The target platform, like linux-x86_64.",
    )


#: what the declarations of the agent endpoints share: public, per platform, 503 while building
AGENT_ENDPOINT: dict[str, Any] = {"auth": False, "query": PlatformQuery, "errors": (503,)}
#: what the declarations of the downloads share: raw bytes
DOWNLOAD: dict[str, Any] = {"raw_response": True, "response_content": DOWNLOAD_CONTENT}


class ManifestOut(Out):
    component: str
    version: str
    platform: str
    size: int
    sha256: str
    #: base64 Ed25519 signature over the other five fields (docs/protocol.md, "Build manifests")
    signature: str


class RunnerOut(ManifestOut):
    download: str


def _agent_build(ctx: RequestContext, platform: str) -> AgentBuild:
    if platform not in PLATFORMS:
        raise NotFound(
            f"no octo-agent build for platform {platform!r}",
            hint=f"this appliance serves octo-agent for: {', '.join(PLATFORMS)}",
        )
    try:
        build = ctx.appliance.agent_builds.get(platform)
    except BuildError as exc:
        raise ServiceUnavailable(
            f"no octo-agent build is available: {exc.message}",
            retry_after=BUILD_RETRY_AFTER,
            hint=exc.hint,
        ) from None
    if build is None:
        raise ServiceUnavailable(
            "the octo-agent build is being made (the first request of these sources on a "
            "development install builds it; this takes a few minutes)",
            retry_after=BUILD_RETRY_AFTER,
            hint=f"ask again in {BUILD_RETRY_AFTER} seconds",
        )
    return build


def _download(path: Any, name: str, sha256: str) -> Response:
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=name,
        headers={"x-sha256": sha256},
    )


@router.get(
    "/agent",
    summary="The signed manifest of the octo-agent build this appliance serves",
    response=ManifestOut,
    **AGENT_ENDPOINT,
)
def agent_manifest(ctx: RequestContext, query: PlatformQuery) -> dict[str, Any]:
    """No API key: builds are not secret. 503 with ``Retry-After`` while a development
    install is still building it."""
    build = _agent_build(ctx, query.platform)
    return sign(ctx.appliance.signing_key(), **build.info()).to_json()


@router.get(
    "/agent/download",
    summary="Download the octo-agent executable (check it against GET /agent)",
    **AGENT_ENDPOINT,
    **DOWNLOAD,
)
def agent_download(ctx: RequestContext, query: PlatformQuery, request: Request) -> Response:
    """``application/octet-stream`` with ``X-SHA256``; the manifest says what to expect."""
    build = _agent_build(ctx, query.platform)
    return _download(build.path, "octo-agent", build.sha256)


@router.get("/runner", summary="The runner build this appliance serves", response=RunnerOut)
def runner_info(ctx: RequestContext) -> dict[str, Any]:
    ctx.require(Permission.SYSTEM_VIEW)
    runner = ctx.appliance.runner_build()
    manifest = sign(
        ctx.appliance.signing_key(),
        component=RUNNER_COMPONENT,
        version=runner.version,
        platform=RUNNER_PLATFORM,
        size=runner.size,
        sha256=runner.sha256,
    )
    return manifest.to_json() | {"download": "/api/v1/runner/download"}


@router.get(
    "/runner/download",
    summary="Download the runner zipapp (agents fetch it over their own connection)",
    **DOWNLOAD,
)
def runner_download(ctx: RequestContext, request: Request) -> Response:
    ctx.require(Permission.SYSTEM_VIEW)
    runner = ctx.appliance.runner_build()
    return _download(runner.path, runner.path.name, runner.sha256)
