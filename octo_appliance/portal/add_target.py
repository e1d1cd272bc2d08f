"""Add a target: the one-line install command carrying a fresh registration token.

The form posts to the API's own ``create_install_command`` (what ``octo-appliance agent
install-command`` calls), so the token is made, scoped and audited exactly as there. The token
is in the answer to that post only: the page is ``no-store``, nothing keeps it, and reloading
the form makes a new one. Beside it, the ``octo-agent register`` command for an agent installed
by hand, with the same token read from standard input (never on the command line, where ``ps``
would show it).
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.bootstrap import InstallCommandIn, create_install_command
from octo_appliance.api.context import RequestContext
from octo_appliance.api.environments import get_environment
from octo_appliance.portal.forms import lines, number, parse, refusal_errors, save
from octo_appliance.portal.session import Form, signed_in, signed_in_post

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal

FIELDS = ("name", "roles", "mode", "listen_port", "expires_in", "max_uses")
#: how long a token may wait for the install: (seconds, label)
EXPIRY = ((3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"))
AGENT_HOME = "/var/lib/octo-agent"


def register_command(made: dict[str, Any], thumbprint: str, mode: str, port: int) -> str:
    """``octo-agent register`` with the token on standard input, for this appliance."""
    server = made["script_url"].split("/bootstrap/", 1)[0]
    style = ["--poll"] if mode == "polling" else ["--listen", f"0.0.0.0:{port}"]
    args = ["--home", AGENT_HOME, "--server", server, "--server-thumbprint", thumbprint]
    args += ["--token-file", "-", *style]
    public = ' --public-host "$(hostname -f)"' if mode == "listening" else ""
    token = shlex.quote(made["token"]["token"])
    return f"printf '%s' {token} | octo-agent register {shlex.join(args)}{public}"


@signed_in
async def show(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /environments/{id}/add-target``: the form (no token is made by reading a page)."""
    ref = request.path_params["id"]
    env = await portal.run(lambda: get_environment(ctx, ref))
    typed = {"name": "", "roles": "", "mode": "polling", "listen_port": "10933"}
    typed |= {"expires_in": "3600", "max_uses": "1"}
    return _form(portal, request, ctx, env, typed, {})


def _form(
    portal: Portal,
    request: Request,
    ctx: Any,
    env: dict[str, Any],
    typed: dict[str, Any],
    errors: dict[str, str],
    made: dict[str, Any] | None = None,
    register: str = "",
    status_code: int = 200,
) -> Response:
    context = {
        "environment": env,
        "typed": typed,
        "errors": errors,
        "made": made,
        "register": register,
        "expiry": EXPIRY,
    }
    return portal.render(request, ctx, "admin/add_target.html", context, status_code)


@signed_in_post
async def submit(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /environments/{id}/add-target``: the command, shown in this answer only."""
    ref = request.path_params["id"]
    env = await portal.run(lambda: get_environment(ctx, ref))
    typed = {key: form.get(key, "").strip() for key in FIELDS}
    mode = typed["mode"] or "polling"
    values: dict[str, Any] = {
        "name": typed["name"] or f"portal: {env['name']}",
        "environments": [env["id"]],
        "roles": lines(typed["roles"]),
        "mode": mode,
        "listen_port": number(port)
        if mode == "listening" and (port := typed["listen_port"])
        else None,
        "expires_in": number(typed["expires_in"] or "3600"),
        "max_uses": number(typed["max_uses"] or "1"),
    }
    parsed = parse(InstallCommandIn, values)
    made, errors = await save(
        ctx,
        parsed,
        lambda body: create_install_command(ctx, body, request),
        lambda exc: refusal_errors(exc, FIELDS),
    )
    body = parsed[0]
    if body is not None and not errors:
        thumbprint = portal.appliance.server_certificate().thumbprint_sha256_hex
        register = register_command(made, thumbprint, body.mode, body.listen_port or 0)
        return _form(portal, request, ctx, env, typed, {}, made, register, 201)
    return _form(portal, request, ctx, env, typed, errors, status_code=422)
