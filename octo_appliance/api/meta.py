"""The API's own description (``openapi.json``) and the loaded plugins."""

from __future__ import annotations

import functools
from typing import Any

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Out
from octo_appliance.security.permissions import Permission

router = Router("system")


class PluginInfo(Out):
    name: str
    #: builtin, entry-point, wheel, folder, or extra (handed in code, as tests do)
    source: str
    builtin: bool
    version: str
    #: loaded, disabled, or failed (``error`` says why; it registered nothing)
    state: str
    error: str | None
    #: the file, folder or distribution it was found as
    location: str
    step_types: list[str]
    transports: list[str]


class PluginList(Out):
    items: list[PluginInfo]
    total: int


@functools.cache
def _openapi_document() -> dict[str, Any]:
    """Built once per process: the endpoint declarations do not change while it runs."""
    from octo_appliance.api import API_PREFIX, all_endpoints
    from octo_appliance.api.openapi import build_openapi

    return build_openapi(all_endpoints(), API_PREFIX)


@router.get(
    "/openapi.json",
    summary="OpenAPI document, generated from the code",
    auth=False,
    blocking=False,
)
def openapi(ctx: RequestContext) -> dict[str, Any]:
    return _openapi_document()


@router.get(
    "/plugins",
    summary="Every plugin found: source, version, state (loaded, disabled, failed), error, and "
    "what it registered",
    response=PluginList,
)
def list_plugins(ctx: RequestContext) -> dict[str, Any]:
    ctx.require(Permission.SYSTEM_VIEW)
    rows = ctx.appliance.plugins.describe()
    return {"items": rows, "total": len(rows)}
