"""``octo-appliance agent install-command``: the one line that makes a machine a target.

It creates a registration token for the environments and roles given (``--expires``, default
1h; ``--max-uses``, default 1) and prints the command to paste on the target, as root or as the
user the agent should run as::

    curl -fsSk --pinnedpubkey 'sha256//...' https://HOST:PORT/bootstrap/agent.sh \\
        | sh -s -- --token OCTOREG-... --poll

HOST:PORT is the ``--server`` address this command used, so give the one the targets reach.
The command is the last line of stdout; with ``--json``, the API's whole answer.
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output
from octo_appliance.cli.registration_token import add_scope_options, scope_body, token_lines


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("agent", help="print the one-line agent install for a target")
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
