"""``octo-appliance agent update [--target REF ...]``: agents update themselves now.

Without ``--target`` every agent target whose agent runs another build than the one this
appliance serves (update ``available``, or ``failed``: asking again retries) is asked; with
it, the named ones. Each answer is the target's update state after the request; follow the
progress with ``octo-appliance target list`` (column UPDATE) or ``target show``.
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, table
from octo_appliance.cli.resources import all_items
from octo_appliance.cli.target import TARGETS

#: the states in which an update is worth asking for
WANTED = ("available", "failed")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("agent", help="update the agents of targets")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    update = actions.add_parser(
        "update",
        help="update agents to the build this appliance serves",
        description="Ask agents to update themselves now (also retries a failed build).",
    )
    update.add_argument(
        "--target",
        action="append",
        metavar="REF",
        help="target id or name (repeatable; default: every agent with an update available "
        "or failed)",
    )
    add_client_options(update)
    update.set_defaults(handler=run_update)


def run_update(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        if args.target:
            refs = list(args.target)
        else:
            refs = [
                t["id"]
                for t in all_items(client, TARGETS.path)
                if t["update"].split(" ", 1)[0] in WANTED and not t["disabled"]
            ]
        answers = [client.post(f"{TARGETS.item_path(ref)}/update-agent") for ref in refs]
    if not answers:
        out.result([], ["every agent already runs the build this appliance serves"])
        return 0
    rows = [[a["name"], a["agent_version"] or "-", a["update"], a["message"]] for a in answers]
    out.result(answers, table(rows, ["TARGET", "AGENT", "UPDATE", "WHAT HAPPENS"]))
    return 0
