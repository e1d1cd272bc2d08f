"""The about page: which version runs, where, on which database, and where its master key is.

The key's place is shown with a reminder to back it up: without the key, no backup of the
data dir or the database can be read (docs/vault.md).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from octo_appliance import __version__
from octo_appliance.api.context import RequestContext
from octo_appliance.db.connection import describe_database
from octo_appliance.portal.session import signed_in
from octo_appliance.vault.keys import ENV_VAR, find_key_file, key_from_env

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance
    from octo_appliance.portal.routes import Portal


def facts(appliance: Appliance) -> dict[str, str]:
    config = appliance.config
    if key_from_env():
        key = f"the {ENV_VAR} environment variable of the service"
    else:
        key = str(find_key_file(config.data_path, config.master_key_file))
    return {
        "version": __version__,
        "node": socket.gethostname(),
        "data_dir": str(config.data_path),
        "database": describe_database(appliance.db, config.database),
        "master_key": key,
    }


@signed_in
async def show(portal: Portal, request: Request, ctx: RequestContext) -> Response:
    return portal.render(request, ctx, "about.html", {"facts": facts(portal.appliance)})
