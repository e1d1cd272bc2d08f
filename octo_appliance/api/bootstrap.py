"""The one-line agent install: the command (``POST /agent/install-command``) and the script it
fetches (``GET /bootstrap/agent.sh``, outside ``/api/v1``, no authentication).

The command is ``curl -fsSk --pinnedpubkey 'sha256//<SPKI hash>' https://HOST:PORT/bootstrap/
agent.sh | sh -s -- --token T [--poll | --listen PORT]``. curl checks the CA before the pin, so
a self-signed appliance needs ``-k``; with ``-k`` the pin is still enforced (a wrong one is
exit 90 before anything is sent), so ``-k`` plus the pin is the safe form, and it also holds
for an operator's CA-signed certificate. The script (``agent_bootstrap/agent.sh``, carried by
the frozen executable) is served with this appliance's address and pins written into it, so it
downloads the agent over the same pin; the token is a registration token (never an API key).
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from octo_appliance.api.context import RequestContext
from octo_appliance.api.registration_tokens import TokenCreated, TokenIn, issue_token
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Out
from octo_appliance.builds.manifest import public_key_text
from octo_appliance.exceptions import ConfigError, ValidationFailed

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance

router = Router("agents")

SCRIPT_PATH = "/bootstrap/agent.sh"
SCRIPT_NAME = "agent.sh"
#: a host as a client may have typed it: a name, IPv4, or [IPv6]; nothing a shell would read
HOST_PATTERN = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)$")
PLATFORMS = ("linux-x86_64",)


class InstallCommandIn(TokenIn):
    mode: Literal["polling", "listening"] = Field(  # type: ignore[assignment]
        "polling", description="How the installed agent talks to the appliance."
    )
    listen_port: int | None = Field(
        None, ge=1, le=65535, description="The port a listening agent binds (listening only)."
    )


class InstallCommandOut(Out):
    id: str = Field(description="The registration token's id (revoke it to void the command).")
    command: str = Field(description="Paste it on the target as root or as the user to run it.")
    script_url: str
    pinned_public_key: str = Field(description="curl's --pinnedpubkey value (sha256//...).")
    token: TokenCreated


def script_file() -> Path:
    """The bootstrap script: beside the frozen executable's files, else in the source tree."""
    base = getattr(sys, "_MEIPASS", None)
    root = Path(base) if base is not None else Path(__file__).resolve().parents[2]
    return root / "agent_bootstrap" / SCRIPT_NAME


def spki_pin(cert_pem: bytes) -> str:
    """curl's ``--pinnedpubkey`` form of a certificate: ``sha256//`` + base64 of the SHA-256 of
    its SubjectPublicKeyInfo (the first certificate of a chain file)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def _address(request: Request, appliance: Appliance) -> tuple[str, int]:
    """The host and port the caller reached this appliance at (what the target will dial)."""
    host = request.url.hostname or "localhost"
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if not HOST_PATTERN.match(host):
        raise ValidationFailed(
            "the Host header is not a host name or address",
            details=[{"field": "Host", "message": "send a plain host name or IP address"}],
        )
    port = request.url.port or int(appliance.config.listen.rsplit(":", 1)[-1] or 443)
    return host, port


def _signing_key(appliance: Appliance) -> str:
    """The public key agent builds are signed with (base64 of the raw Ed25519 key)."""
    return public_key_text(appliance.signing_key())


def render_script(appliance: Appliance, host: str, port: int) -> str:
    cert = appliance.server_certificate()
    values = {
        "@OCTO_HOST@": host,
        "@OCTO_PORT@": str(port),
        "@OCTO_PIN@": spki_pin(cert.cert_file.read_bytes()),
        "@OCTO_THUMBPRINT@": cert.thumbprint_sha256_hex,
        "@OCTO_SIGNING_KEY@": _signing_key(appliance),
        "@OCTO_PLATFORMS@": " ".join(PLATFORMS),
    }
    try:
        text = script_file().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"the agent bootstrap script is missing: {exc.strerror}",
            hint="reinstall the appliance (its executable carries agent_bootstrap/agent.sh)",
        ) from None
    for marker, value in values.items():
        text = text.replace(marker, value)
    return text


def install_command(host: str, port: int, pin: str, token: str, mode: str, port_arg: int) -> str:
    """The line to paste (the pin is base64, the token url-safe: neither needs escaping)."""
    style = ["--poll"] if mode == "polling" else ["--listen", str(port_arg)]
    return (
        f"curl -fsSk --pinnedpubkey '{pin}' https://{host}:{port}{SCRIPT_PATH}"
        f" | sh -s -- {shlex.join(['--token', token, *style])}"
    )


@router.post(
    "/agent/install-command",
    summary="Create a registration token and the one-line agent install that carries it",
    body=InstallCommandIn,
    response=InstallCommandOut,
    status_code=201,
    errors=(422,),
    raw_response=True,
)
def create_install_command(
    ctx: RequestContext, body: InstallCommandIn, request: Request
) -> dict[str, Any]:
    """Needs ``target.edit`` in every environment named (it creates a registration token)."""
    if (body.mode == "listening") != (body.listen_port is not None):
        raise ValidationFailed(
            "listen_port is given for listening agents, and only for them",
            details=[{"field": "listen_port", "message": "e.g. 10933 with mode listening"}],
        )
    host, port = _address(request, ctx.appliance)
    created = issue_token(ctx, body)
    pin = spki_pin(ctx.appliance.server_certificate().cert_file.read_bytes())
    command = install_command(host, port, pin, created["token"], body.mode, body.listen_port or 0)
    return {
        "id": created["id"],
        "command": command,
        "script_url": f"https://{host}:{port}{SCRIPT_PATH}",
        "pinned_public_key": pin,
        "token": created,
    }


def bootstrap_routes(appliance: Appliance) -> list[Route]:
    """``GET /bootstrap/agent.sh``: public (a target has no credential yet), as the script
    holds no secret; the install command fetches it over the pinned TLS."""

    async def agent_script(request: Request) -> Response:
        host, port = _address(request, appliance)
        text = render_script(appliance, host, port)
        return Response(text, media_type="text/x-shellscript; charset=utf-8")

    return [Route(SCRIPT_PATH, agent_script, methods=["GET"])]
