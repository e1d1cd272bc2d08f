"""``GET /api/v1/health``: liveness for load balancers and the smoke test; no auth."""

from __future__ import annotations

from typing import Any

from octo_appliance import __version__
from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Out

router = Router("system")


class Health(Out):
    status: str
    version: str


@router.get("/health", summary="Liveness and version", auth=False, response=Health, blocking=False)
def health(ctx: RequestContext) -> dict[str, Any]:
    return {"status": "ok", "version": __version__}
