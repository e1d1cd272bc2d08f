"""Plugins: every plugin the appliance found, as ``GET /api/v1/plugins`` shows them.

Source, version, state (loaded, disabled, failed) and, for a failed one, the error that kept it
from registering anything; what each registered (step types, transports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance.api.context import RequestContext
from octo_appliance.api.meta import list_plugins
from octo_appliance.portal.session import signed_in

if TYPE_CHECKING:
    from octo_appliance.portal.routes import Portal


@signed_in
async def show(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    """``GET /plugins``."""
    plugins = await portal.run(lambda: list_plugins(ctx))
    return portal.render(request, ctx, "admin/plugins.html", {"plugins": plugins["items"]})
