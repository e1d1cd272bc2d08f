"""``octo-appliance package push|list``: the appliance's built-in package feed.

``push`` streams the file from disk (never read whole into memory) with a progress line on
stderr. The file name is the package's identity, ``ID.VERSION.ext`` (``--file-name`` sends a
differently named file under that name); it is checked before anything is sent. A version the
feed already holds is refused unless ``--replace`` is given; the appliance says so as soon as
it has read the name, and that answer stops the upload (cli/upload.py). Replacing content that
releases pinned also needs ``--force``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from octo_appliance.cli.client import ApiClient, ApiRefused, ClientError
from octo_appliance.cli.options import add_client_options, check_take, open_client
from octo_appliance.cli.output import Output, Progress, page_lines, size, stamp
from octo_appliance.cli.resources import segment
from octo_appliance.exceptions import ConfigError, ValidationFailed

PACKAGES = "/packages"
PUSH_PERMISSION = "package.push"
REPLACE_HINT = "pass --replace to overwrite it, or push a new version"
FORCE_HINT = (
    "push the new content as a new version, or add --force to overwrite it anyway (those "
    "releases then cannot be deployed)"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("package", help="push packages to the feed, or list them")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    push = actions.add_parser(
        "push",
        help="upload a package (ID.VERSION.zip, .tar, .tar.gz or .tgz)",
        description="Upload a package to the appliance's feed, streamed from disk with a "
        "progress line on stderr. The file name says the package id and version.",
    )
    push.add_argument("file", metavar="FILE", type=Path, help="the package archive")
    push.add_argument(
        "--file-name",
        metavar="NAME",
        help="send it under this name (ID.VERSION.ext) instead of FILE's own",
    )
    push.add_argument(
        "--replace", action="store_true", help="overwrite a version the feed already holds"
    )
    push.add_argument(
        "--force",
        action="store_true",
        help="with --replace: overwrite even content that releases pinned (they can then not "
        "be deployed)",
    )
    add_client_options(push)
    push.set_defaults(handler=run_push)

    listing = actions.add_parser("list", help="list the feed's packages, newest first")
    listing.add_argument("--id", metavar="ID", help="only versions of this package id")
    listing.add_argument("--take", type=int, default=50, metavar="N", help="at most N (default 50)")
    add_client_options(listing)
    listing.set_defaults(handler=run_list)


def _checked_file(args: argparse.Namespace) -> tuple[Path, str, Any]:
    file: Path = args.file
    if not file.is_file():
        raise ConfigError(
            f"{file} is not a file" if file.exists() else f"{file} does not exist",
            hint="give the path of a package archive",
        )
    name = args.file_name or file.name
    # here, not at the top: the feed's naming rule imports the database models, which the
    # other package commands do not need to load
    from octo_appliance.feed.names import parse_file_name

    try:
        parsed = parse_file_name(name)
    except ValidationFailed as exc:
        raise ConfigError(
            f"cannot push {name}: {exc.message}",
            hint=f"{exc.hint}; or keep the file and pass --file-name ID.VERSION.ext",
        ) from None
    return file, name, parsed


def _check_before_sending(client: ApiClient, package_id: str, version: str, replace: bool) -> None:
    """What the appliance would refuse the upload for, asked first with cheap calls: a wrong
    key, a user who may not push, a version it already holds. An appliance that refuses an
    upload early closes the connection, and the client's TCP stack may drop its answer along
    with the unsent rest of the body (the upload still reports the answer when it gets it)."""
    me = client.get("/users/me")
    if PUSH_PERMISSION not in (me.get("permissions") or []):
        raise ClientError(
            f"user {me.get('username')} (whose API key this is) may not push packages",
            hint=f"use the key of a user allowed to ({PUSH_PERMISSION}: administrators)",
        )
    if replace:
        return
    try:
        held = client.get(f"{PACKAGES}/{segment(package_id)}/{segment(version)}")
    except ApiRefused as exc:
        if exc.status == 404:
            return  # not there yet (or an appliance that cannot say: the upload will tell)
        raise
    raise ClientError(
        f"the feed already holds {package_id} {version} (sha256 {held.get('sha256')}, pushed "
        f"by {held.get('uploaded_by')} at {stamp(held.get('uploaded_at'))} UTC)",
        hint=REPLACE_HINT,
    )


def run_push(args: argparse.Namespace) -> int:
    file, name, parsed = _checked_file(args)
    out = Output(args.json)
    if args.force and not args.replace:
        raise ConfigError("--force only applies with --replace", hint="add --replace")
    params = {"replace": "true"} if args.replace else None
    if params is not None and args.force:
        params["force"] = "true"
    with open_client(args) as client:
        _check_before_sending(client, parsed.package_id, parsed.version, args.replace)
        progress = Progress(f"pushing {name}")
        try:
            package = client.upload(
                PACKAGES, file, file_name=name, params=params, progress=progress
            )
        except ApiRefused as exc:
            if exc.status == 409 and not args.replace:
                exc.hint = REPLACE_HINT
            elif exc.status == 409 and not args.force:  # releases pinned the content
                exc.hint = FORCE_HINT
            raise
        finally:
            progress.end()
    verb = "Replaced" if args.replace else "Pushed"
    lines = [
        f"{verb} {package['package_id']} {package['version']} ({package['format']}, "
        f"{size(int(package['size']))}) as {package['id']}.",
        f"  sha256 {package['sha256']}",
    ]
    out.result(package, lines)
    return 0


def run_list(args: argparse.Namespace) -> int:
    check_take(args.take)
    query: dict[str, Any] = {"take": args.take}
    if args.id:
        query["id"] = args.id
    out = Output(args.json)
    with open_client(args) as client:
        page = client.get(PACKAGES, query)
    rows = [
        [
            item["package_id"],
            item["version"],
            item["format"],
            size(int(item["size"])),
            stamp(item.get("uploaded_at")),
            item.get("uploaded_by", ""),
        ]
        for item in page["items"]
    ]
    header = ["PACKAGE", "VERSION", "FORMAT", "SIZE", "UPLOADED", "BY"]
    lines = page_lines(page, rows, header, "No packages.")
    out.result(page, lines)
    return 0
