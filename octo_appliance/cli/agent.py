"""``octo-appliance agent install-command | update``: getting agents onto targets, and keeping
them current.

``install-command`` creates a registration token for the environments and roles given
(``--expires``, default 1h; ``--max-uses``, default 1) and prints the command to paste on the
target, as root or as the user the agent should run as::

    curl -fsSk --pinnedpubkey 'sha256//...' https://HOST:PORT/bootstrap/agent.sh \\
        | sh -s -- --token OCTOREG-... --poll

HOST:PORT is the ``--server`` address this command used, so give the one the targets reach.
The command is the last line of stdout; with ``--json``, the API's whole answer.

``update [--target REF ...]`` asks agents to update themselves now: without ``--target`` every
agent target whose agent runs another build than the one this appliance serves (update
``available``, or ``failed``: asking again retries), with it the named ones. Each answer is the
target's update state after the request; follow the progress with ``octo-appliance target
list`` (column UPDATE) or ``target show``.
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, table
from octo_appliance.cli.registration_token import add_scope_options, scope_body, token_lines
from octo_appliance.cli.resources import all_items
from octo_appliance.cli.target import TARGETS

#: the states in which an update is worth asking for
WANTED = ("available", "failed")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "agent", help="print the one-line agent install for a target, or update agents"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    command = actions.add_parser(
        "install-command",
        help="create a registration token and print the one-line install that carries it",
    )
    add_scope_options(command)
    style = command.add_mutually_exclusive_group()
    style.add_argument(
        "--poll", action="store_true", help="a polling agent: it dials the appliance (default)"
    )
    style.add_argument(
        "--listen", type=int, metavar="PORT", help="a listening agent: the appliance dials PORT"
    )
    add_client_options(command)
    command.set_defaults(handler=run_install_command)

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


def run_install_command(args: argparse.Namespace) -> int:
    out = Output(args.json)
    body = scope_body(args)
    if args.listen is not None:
        body |= {"mode": "listening", "listen_port": args.listen}
    else:
        body |= {"mode": "polling"}
    with open_client(args) as client:
        made = client.post("/agent/install-command", body)
    lines = [
        *token_lines(made["token"]),
        "Paste this on the target (as root, or as the user the agent should run as):",
        made["command"],
    ]
    out.result(made, lines)
    return 0


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
