"""``/api/v1/packages``: the built-in package feed (see docs/packages.md).

Uploads are ``multipart/form-data`` with the package in the field ``file``, named
``ID.VERSION.ext``. The body is parsed as it arrives and sealed straight into the vault's file
format (a worker thread per piece), so memory stays flat whatever the package size and no
plaintext touches the disk; the archive is checked from the sealed file before it is kept.
Downloads stream the plaintext back, decrypted piece by piece in worker threads.

The feed belongs to no project: reading needs ``package.view``; pushing and deleting need
``package.push`` / ``package.delete`` through an unscoped grant.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router, in_worker, json_response, write_in_worker
from octo_appliance.api.schemas import Line, ListQuery, Out
from octo_appliance.db.base import iso, tuples
from octo_appliance.db.packages import Package
from octo_appliance.exceptions import NotFound, VaultError
from octo_appliance.feed.limits import ArchiveLimits
from octo_appliance.feed.names import display_name, version_key
from octo_appliance.feed.records import (
    Saved,
    find_package,
    in_use_conflict,
    refuse_existing,
    releases_using,
    save_package,
)
from octo_appliance.feed.sealed_files import (
    MIB,
    ReceivedPackage,
    discard,
    incoming_dir,
    limit_message,
    remove_kept,
    sweep_incoming,
)
from octo_appliance.feed.upload import MultipartUpload
from octo_appliance.filesystem.disk_space import data_dir_full, format_bytes, free_bytes
from octo_appliance.security.permissions import Permission

router = Router("packages")
log = logging.getLogger("octo_appliance.api.packages")

#: body bytes gathered on the event loop before one worker-thread hop parses and seals them
FEED_PIECE = 1024 * 1024
#: plaintext bytes decrypted per worker-thread hop of a download
DOWNLOAD_PIECE = 1024 * 1024
#: room for the multipart framing around the file when judging a declared Content-Length
MULTIPART_SLACK = 1024 * 1024

UPLOAD_CONTENT: dict[str, Any] = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": "The package, with the file name ID.VERSION.ext "
                    "(.zip, .tar, .tar.gz or .tgz).",
                }
            },
        }
    }
}
DOWNLOAD_CONTENT: dict[str, Any] = {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
}


class PackageOut(Out):
    id: str
    package_id: str
    version: str
    format: str
    sha256: str
    size: int
    file_name: str
    uploaded_at: str
    uploaded_by: str


class PackageListQuery(ListQuery):
    id: Line | None = Field(None, max_length=200, description="Only this package id (exact).")


class UploadQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    replace: bool = Field(False, description="Overwrite the version if it exists (else 409).")
    force: bool = Field(
        False,
        description="With replace: overwrite even content that releases pinned (else 409; "
        "those releases then cannot be deployed).",
    )


class DeleteQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    force: bool = Field(False, description="Delete even if releases use the version.")


def package_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "package_id": row.package_id,
        "version": row.version,
        "format": row.format,
        "sha256": row.sha256,
        "size": int(row.size),
        "file_name": display_name(row.package_id, row.version, row.format),
        "uploaded_at": iso(row.uploaded_at),
        "uploaded_by": row.uploaded_by,
    }


def _label(row: Any) -> str:
    return f"{row.package_id} {row.version}"


def _get_or_404(package_id: str, version: str) -> Package:
    row = find_package(package_id, version)
    if row is None:
        raise NotFound(
            f"no package {package_id} version {version} in the feed",
            hint=f"list the versions with GET /api/v1/packages?id={package_id}",
        )
    return row


# ---------------------------------------------------------------- upload


def _refuse_declared_size(request: Request, limit: int, data_dir: Path) -> None:
    """A declared ``Content-Length`` over the limit (413), or over the data dir's free space
    (507): refused before a byte of the body is read."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return
    if int(declared) > limit + MULTIPART_SLACK:
        raise limit_message(limit)
    free = free_bytes(incoming_dir(data_dir))
    if free is not None and int(declared) > free:
        raise data_dir_full(data_dir, f"receiving a {format_bytes(int(declared))} upload")


def _record(ctx: RequestContext, received: ReceivedPackage, query: UploadQuery) -> Saved:
    appliance = ctx.appliance
    saved = save_package(
        appliance.files_root,
        received,
        replace=query.replace,
        force=query.force,
        uploaded_by=ctx.user.username,
    )
    row = saved.package
    details: dict[str, Any] = {
        "package_id": row.package_id,
        "version": row.version,
        "format": row.format,
        "sha256": row.sha256,
        "size": int(row.size),
    }
    if saved.created:
        ctx.audit("create", "package", row.id, _label(row), details)
    else:
        details["replaced_sha256"] = saved.old_sha256
        if saved.broken_releases:
            details["forced"] = True
            details["releases"] = list(saved.broken_releases)
        ctx.audit("update", "package", row.id, _label(row), details)
        old_file = saved.old_file
        if old_file and old_file != row.file_name:
            ctx.after_commit(partial(remove_kept, appliance.files_root, old_file))
    return saved


@router.post(
    "/packages",
    summary="Upload a package (multipart/form-data, field 'file' named ID.VERSION.ext)",
    query=UploadQuery,
    response=PackageOut,
    status_code=201,
    errors=(400, 409, 413, 422, 507),
    streaming=True,
    request_content=UPLOAD_CONTENT,
)
async def upload_package(ctx: RequestContext, query: UploadQuery, request: Request) -> Response:
    """201 with the package; 200 when ``replace=true`` overwrote an existing version (its old
    file is deleted once the new row is committed). Refused with nothing stored: no ``file``
    field (422), a bad name, extension or non-semantic version (422), an empty or damaged
    archive (422), one that expands past ``max_expanded_mb`` or ``max_expansion_ratio`` times
    its size (422), a zip holding one path twice (422), over ``max_package_mb`` (413, as soon
    as the limit is crossed), a full disk (507 naming the data dir and its free space), an
    existing version without ``replace=true`` (409, checked as soon as the file name
    arrives); a replace that changes content releases pinned, without ``force=true`` (409
    naming them, checked once the content's hash is known)."""
    ctx.require_unscoped(Permission.PACKAGE_PUSH)
    appliance = ctx.appliance
    data_dir = appliance.files_root
    limit = appliance.config.max_package_mb * MIB
    _refuse_declared_size(request, limit, data_dir)
    upload = MultipartUpload(
        appliance.vault,
        data_dir,
        request.headers.get("content-type", ""),
        limit,
        ArchiveLimits.from_settings(appliance.config),
    )
    received: ReceivedPackage | None = None
    try:
        await anyio.to_thread.run_sync(sweep_incoming, data_dir)
        checked = False
        pending = bytearray()
        async for piece in request.stream():
            pending += piece
            if len(pending) < FEED_PIECE:
                continue
            await anyio.to_thread.run_sync(upload.feed, bytes(pending))
            pending.clear()
            if not checked and upload.name is not None:
                checked = True
                name = upload.name
                await in_worker(
                    appliance,
                    partial(refuse_existing, name.package_id, name.version, query.replace),
                )
        if pending:
            await anyio.to_thread.run_sync(upload.feed, bytes(pending))
        received = await anyio.to_thread.run_sync(upload.finish)
        saved: Saved = await write_in_worker(ctx, partial(_record, ctx, received, query))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(upload.abort)
            if received is not None:
                await anyio.to_thread.run_sync(discard, data_dir, received)
        raise
    return json_response(package_json(saved.package), 201 if saved.created else 200)


# ---------------------------------------------------------------- reads


@router.listing(
    "/packages",
    "List packages (by id, newest version first within an id)",
    PackageOut,
    query=PackageListQuery,
)
def list_packages(ctx: RequestContext, query: PackageListQuery) -> dict[str, Any]:
    """Ordered by package id, then by semantic version, highest first. ``id`` selects one
    package id exactly; ``name`` is a case-insensitive substring of the package id."""
    ctx.require(Permission.PACKAGE_VIEW)
    keys = Package.select(Package.id, Package.package_id, Package.version)
    if query.id:
        keys = keys.where(Package.package_id == query.id)
    if query.name:
        keys = keys.where(Package.package_id.contains(query.name))
    # semantic-version order is not a SQL order: sort the (small) key tuples, load one page
    ordered = sorted(tuples(keys), key=lambda key: (version_key(key[2]) or (), key[2]))
    ordered.reverse()
    ordered.sort(key=lambda key: (key[1].lower(), key[1]))
    page_ids = [key[0] for key in ordered[query.skip : query.skip + query.take]]
    rows = {row.id: row for row in Package.select().where(Package.id.in_(page_ids))}
    return {
        "items": [package_json(rows[pid]) for pid in page_ids if pid in rows],
        "total": len(ordered),
    }


@router.get("/packages/{package_id}/{version}", summary="Get a package", response=PackageOut)
def get_package(ctx: RequestContext, package_id: str, version: str) -> dict[str, Any]:
    ctx.require(Permission.PACKAGE_VIEW)
    return package_json(_get_or_404(package_id, version))


async def _plaintext(reader: BinaryIO, label: str) -> AsyncIterator[bytes]:
    """Decrypt in worker threads, a piece at a time; a damaged file ends the response early
    (the client sees fewer bytes than Content-Length) and is logged."""
    try:
        while piece := await anyio.to_thread.run_sync(reader.read, DOWNLOAD_PIECE):
            yield piece
    except VaultError as exc:
        log.error("download of package %s stopped: %s", label, exc)
    finally:
        reader.close()


@router.get(
    "/packages/{package_id}/{version}/download",
    summary="Download a package (streamed plaintext)",
    raw_response=True,
    response_content=DOWNLOAD_CONTENT,
)
def download_package(
    ctx: RequestContext, package_id: str, version: str, request: Request
) -> Response:
    """``application/octet-stream`` with ``Content-Length``, ``Content-Disposition`` (the
    file name) and ``X-Package-SHA256`` (of the bytes sent)."""
    ctx.require(Permission.PACKAGE_VIEW)
    row = _get_or_404(package_id, version)
    name = display_name(row.package_id, row.version, row.format)
    headers = {
        "Content-Length": str(int(row.size)),
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Package-SHA256": row.sha256,
        "Cache-Control": "no-store",
    }
    reader = ctx.appliance.feed.open_row(row)  # opens (and checks the size) now: errors are 500s
    if request.method == "HEAD":
        reader.close()
        return Response(None, headers=headers, media_type="application/octet-stream")
    return StreamingResponse(
        _plaintext(reader, _label(row)), headers=headers, media_type="application/octet-stream"
    )


# ---------------------------------------------------------------- delete


@router.delete(
    "/packages/{package_id}/{version}",
    summary="Delete a package version (409 while releases use it, unless force=true)",
    query=DeleteQuery,
    status_code=204,
    errors=(409,),
)
def delete_package(
    ctx: RequestContext, package_id: str, version: str, query: DeleteQuery
) -> Response:
    """204. A version a release uses is refused with 409 naming those releases (project and
    release version); ``force=true`` deletes it anyway, and those releases can then not be
    deployed. The sealed file is removed once the deletion is committed."""
    ctx.require_unscoped(Permission.PACKAGE_DELETE)
    row = _get_or_404(package_id, version)
    users = releases_using(row.package_id, row.version)
    if users and not query.force:
        raise in_use_conflict(row, users)
    row.delete_instance()
    details: dict[str, Any] = {
        "package_id": row.package_id,
        "version": row.version,
        "sha256": row.sha256,
    }
    if users:
        details["forced"] = True
        details["releases"] = [f"{item['project']} {item['release']}" for item in users]
    ctx.audit("delete", "package", row.id, _label(row), details)
    ctx.after_commit(partial(remove_kept, ctx.appliance.files_root, row.file_name))
    return Response(status_code=204)
