"""``octo-appliance environment list|create|show|delete``: where releases are deployed.

Environments come first: an agent registers into one, a lifecycle orders them, a deployment
goes to one. Listed in their sort order.
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, stamp
from octo_appliance.cli.resources import Resource, add_delete, add_list, add_show, created

ENVIRONMENTS = Resource(
    noun="environment",
    path="/environments",
    headers=["NAME", "SORT", "ID", "DESCRIPTION"],
    row=lambda e, _: [e["name"], str(e["sort_order"]), e["id"], e["description"]],
    detail=lambda e, _: [
        f"{e['name']} ({e['id']}), sort order {e['sort_order']}, created {stamp(e['created_at'])}",
        *([e["description"]] if e["description"] else []),
    ],
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("environment", help="list, create, show or delete environments")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_list(actions, ENVIRONMENTS)
    create = actions.add_parser("create", help="create an environment")
    create.add_argument("name", metavar="NAME", help="e.g. Dev, Test, Prod")
    create.add_argument("--description", default="", metavar="TEXT")
    create.add_argument(
        "--sort-order",
        type=int,
        default=0,
        metavar="N",
        help="place in listings and in the default lifecycle (lower first; default 0)",
    )
    add_client_options(create)
    create.set_defaults(handler=run_create)
    add_show(actions, ENVIRONMENTS)
    add_delete(actions, ENVIRONMENTS, "Refused while targets are in it.")


def run_create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "description": args.description, "sort_order": args.sort_order}
    with open_client(args) as client:
        item = client.post("/environments", body)
    return created(Output(args.json), ENVIRONMENTS, item)
