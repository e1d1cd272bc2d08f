"""``octo-appliance release create|list``: cut and list a project's releases on a running appliance.

A release snapshots the project's process, lifecycle, variables and package versions; it is
what ``deploy`` sends to an environment. Projects are named by id or name; releases by version
or id (``latest``: the newest one created).
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.client import ApiClient, ClientError
from octo_appliance.cli.options import add_client_options, check_take, open_client
from octo_appliance.cli.output import Output, page_lines, stamp
from octo_appliance.cli.resources import segment
from octo_appliance.exceptions import ConfigError

LATEST = "latest"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("release", help="create or list a project's releases")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        help="create a release: a snapshot of the project's process, variables and packages",
        description="Create a release of a project. Without --version it takes the highest "
        "version's patch number plus one (0.0.1 for the first).",
    )
    create.add_argument("--project", required=True, metavar="PROJECT", help="project id or name")
    create.add_argument("--version", metavar="VERSION", help="a semantic version, e.g. 1.4.0")
    create.add_argument("--notes", default="", metavar="TEXT", help="release notes")
    create.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="ID:VERSION[:STEP]",
        help="pin this package version (repeatable; only for STEP when several steps deploy "
        "it); packages left out get their latest version",
    )
    add_client_options(create)
    create.set_defaults(handler=run_create)

    listing = actions.add_parser("list", help="list a project's releases, newest first")
    listing.add_argument("--project", required=True, metavar="PROJECT", help="project id or name")
    listing.add_argument(
        "--take", type=int, default=20, metavar="N", help="at most N releases (default 20)"
    )
    add_client_options(listing)
    listing.set_defaults(handler=run_list)


def find_release(client: ApiClient, project: str, ref: str) -> dict[str, Any]:
    """The release ``ref`` (version, id or ``latest``) of ``project`` (id or name)."""
    releases = f"/projects/{segment(project)}/releases"
    if ref == LATEST:
        items = client.get(releases, {"take": 1})["items"]
        if not items:
            raise ClientError(
                f"project '{project}' has no release yet",
                hint=f"create one with 'octo-appliance release create --project {project}'",
            )
        return dict(items[0])
    return dict(client.get(f"{releases}/{segment(ref)}"))


def package_choice(text: str) -> dict[str, Any]:
    package, _, rest = text.partition(":")
    version, _, step = rest.partition(":")
    if not package.strip() or not version.strip():
        raise ConfigError(
            f"--package {text!r} is not ID:VERSION or ID:VERSION:STEP",
            hint="e.g. --package Web.App:1.4.0",
        )
    choice: dict[str, Any] = {"package": package.strip(), "version": version.strip()}
    if step.strip():
        choice["step"] = step.strip()
    return choice


def run_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"notes": args.notes}
    if args.version:
        body["version"] = args.version
    if args.package:  # only when given: older appliances take no packages
        body["packages"] = [package_choice(text) for text in args.package]
    out = Output(args.json)
    with open_client(args) as client:
        release = client.post(f"/projects/{segment(args.project)}/releases", body)
    lines = [
        f"Created release {release['version']} of project {args.project} ({release['id']}), "
        f"{len(release.get('steps') or [])} step(s)."
    ]
    for pin in release.get("packages") or []:
        lines.append(f"  package {pin['package_id']} {pin['version']} (step {pin['step']})")
    lines.append(
        f"Deploy it with: octo-appliance deploy --project {args.project} "
        f"--release {release['version']} --environment ENVIRONMENT"
    )
    out.result(release, lines)
    return 0


def run_list(args: argparse.Namespace) -> int:
    check_take(args.take)
    out = Output(args.json)
    with open_client(args) as client:
        page = client.get(f"/projects/{segment(args.project)}/releases", {"take": args.take})
    rows = [
        [item["version"], stamp(item.get("created_at")), item.get("created_by", ""), item["id"]]
        for item in page["items"]
    ]
    lines = page_lines(page, rows, ["VERSION", "CREATED", "BY", "ID"], "No releases yet.")
    out.result(page, lines)
    return 0
