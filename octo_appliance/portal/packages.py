"""The packages page: the feed's packages and versions, upload (with a progress bar), delete.

Reads, uploads and deletions are the API's own (``api/packages.py``): ``package.view`` to see,
``package.push`` / ``package.delete`` through an unscoped grant to change. The upload form
works without JavaScript (``package_upload.py``); with it, ``static/package-upload.js`` sends
the file to ``POST /api/v1/packages`` with the CSRF header and shows the upload's progress.
"""

from __future__ import annotations

import json
from itertools import groupby
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from octo_appliance.api.packages import (
    DeleteQuery,
    PackageListQuery,
    UploadQuery,
    delete_package,
    list_packages,
    upload_package,
)
from octo_appliance.api.routing import write_in_worker
from octo_appliance.exceptions import ApiError, Conflict, Forbidden
from octo_appliance.portal.forms import by_field, problem
from octo_appliance.portal.package_upload import peek_fields
from octo_appliance.portal.session import CROSS_SITE, Form, signed_in, signed_in_post
from octo_appliance.security.permissions import Permission

if TYPE_CHECKING:
    from octo_appliance.api.context import RequestContext
    from octo_appliance.portal.routes import Portal

PAGE_SIZE = 200


def _listing(ctx: RequestContext, name: str, skip: int) -> dict[str, Any]:
    page = list_packages(ctx, PackageListQuery(name=name or None, skip=skip, take=PAGE_SIZE))
    groups = [
        {"package_id": package_id, "versions": list(versions)}
        for package_id, versions in groupby(page["items"], key=lambda item: item["package_id"])
    ]
    return {"groups": groups, "total": page["total"]}


async def _page(
    portal: Portal,
    request: Request,
    ctx: RequestContext,
    *,
    errors: dict[str, str] | None = None,
    message: str = "",
    conflict: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    name = request.query_params.get("name", "")[:200]
    skip_text = request.query_params.get("skip", "0")
    skip = int(skip_text) if skip_text.isdigit() and len(skip_text) < 10 else 0
    listing = await portal.run(lambda: _listing(ctx, name, skip))
    context = {
        **listing,
        "name": name,
        "skip": skip,
        "page_size": PAGE_SIZE,
        "may_push": ctx.user.can_unscoped(Permission.PACKAGE_PUSH),
        "may_delete": ctx.user.can_unscoped(Permission.PACKAGE_DELETE),
        "uploaded": request.query_params.get("uploaded", "")[:300],
        "deleted": request.query_params.get("deleted", "")[:300],
        "errors": errors or {},
        "problem": message,
        "conflict": conflict,
    }
    return portal.render(request, ctx, "packages.html", context, status_code)


#: ``GET /packages?name=&skip=``
show = signed_in(_page)


async def upload(portal: Portal, request: Request) -> Response:
    """``POST /packages`` (``multipart/form-data``: ``csrf_token``, ``replace``, ``file``)."""
    if request.headers.get("sec-fetch-site", "") in CROSS_SITE:
        raise Forbidden("a form posted from another site", hint="use the portal's own forms")
    fields, replayed = await peek_fields(request)
    ctx = await portal.signed_in(request, {"csrf_token": fields.get("csrf_token", "")})
    if ctx is None:
        return portal.sign_in_first(request)
    query = UploadQuery(replace=fields.get("replace") == "on")
    try:
        answer = await upload_package(ctx, query, replayed)
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise
        errors = by_field(exc) or {"file": exc.message}
        return await _page(
            portal, request, ctx, errors=errors, message=problem(exc), status_code=exc.status_code
        )
    saved = json.loads(bytes(answer.body))
    label = quote(f"{saved['package_id']} {saved['version']}")
    return RedirectResponse(f"/packages?uploaded={label}", status_code=303)


@signed_in_post
async def delete(portal: Portal, request: Request, ctx: RequestContext, form: Form) -> Response:
    """``POST /packages/{id}/{version}/delete`` (``force=on``: even if releases use it)."""
    package_id, version = request.path_params["package_id"], request.path_params["version"]
    query = DeleteQuery(force=form.get("force") == "on")
    try:
        await write_in_worker(ctx, lambda: delete_package(ctx, package_id, version, query))
    except Conflict as exc:
        conflict = {"package_id": package_id, "version": version, "message": problem(exc)}
        return await _page(portal, request, ctx, conflict=conflict, status_code=409)
    label = quote(f"{package_id} {version}")
    return RedirectResponse(f"/packages?deleted={label}", status_code=303)
