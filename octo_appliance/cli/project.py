"""``octo-appliance project list|create|show|delete``: what gets deployed.

A project holds a deployment process (``octo-appliance process``) and variables
(``octo-appliance variables``); it follows a lifecycle (the default one, one phase per
environment in sort order, unless ``--lifecycle`` names another).
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, stamp
from octo_appliance.cli.resources import (
    Names,
    Resource,
    add_delete,
    add_list,
    add_show,
    created,
    joined,
)


def _detail(p: dict[str, Any], _: Names) -> list[str]:
    lines = [f"{p['name']} ({p['id']}), created {stamp(p['created_at'])}"]
    if p["description"]:
        lines.append(p["description"])
    lines.append(f"lifecycle: {p['lifecycle'] or 'the default (one phase per environment)'}")
    lines.append(f"library variable sets: {joined(p['library_sets'])}")
    return lines


PROJECTS = Resource(
    noun="project",
    path="/projects",
    headers=["NAME", "ID", "LIFECYCLE", "DESCRIPTION"],
    row=lambda p, _: [p["name"], p["id"], p["lifecycle"] or "default", p["description"]],
    detail=_detail,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("project", help="list, create, show or delete projects")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_list(actions, PROJECTS)
    create = actions.add_parser(
        "create",
        help="create a project",
        description="Create a project; then give it a process ('octo-appliance process import') "
        "and variables ('octo-appliance variables set' or 'import').",
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument("--description", default="", metavar="TEXT")
    create.add_argument(
        "--lifecycle", metavar="LIFECYCLE", help="lifecycle id or name (default: the default one)"
    )
    create.add_argument(
        "--library-set",
        action="append",
        default=[],
        metavar="SET",
        help="include this library variable set (repeatable, in precedence order)",
    )
    add_client_options(create)
    create.set_defaults(handler=run_create)
    add_show(actions, PROJECTS)
    add_delete(actions, PROJECTS, "Its process, variables, releases and deployments go with it.")


def run_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "description": args.description}
    if args.lifecycle:
        body["lifecycle"] = args.lifecycle
    if args.library_set:
        body["library_sets"] = args.library_set
    with open_client(args) as client:
        item = client.post("/projects", body)
    return created(Output(args.json), PROJECTS, item)
