"""``octo-appliance user list|create|show``: the people and service accounts.

A new user holds no permission until a team takes them in (``octo-appliance team
add-member``). A password is read from a file (``--password-file``, ``-`` for stdin), never
from the command line, where other users of the machine could read it in ``ps``; without one
the user signs in with API keys only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from octo_appliance.cli.documents import read_secret
from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, stamp
from octo_appliance.cli.resources import Resource, add_list, add_show, created, joined


def _detail(u: dict[str, Any], _: Any) -> list[str]:
    return [
        f"{u['username']} ({u['id']}){'' if u['is_active'] else ' [inactive]'}",
        f"name: {u['display_name'] or '-'}, email: {u['email'] or '-'}",
        f"password: {'set' if u['has_password'] else 'none (API keys only)'}",
        f"teams: {joined([t['name'] for t in u['teams']])}",
        f"created {stamp(u['created_at'])}",
    ]


USERS = Resource(
    noun="user",
    path="/users",
    headers=["USERNAME", "NAME", "TEAMS", "ACTIVE", "ID"],
    row=lambda u, _: [
        u["username"],
        u["display_name"],
        joined([t["name"] for t in u["teams"]]),
        "yes" if u["is_active"] else "no",
        u["id"],
    ],
    detail=_detail,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("user", help="list, create or show users")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_list(actions, USERS)
    create = actions.add_parser(
        "create",
        help="create a user (add them to a team to give them permissions)",
        description="Create a user. They hold no permission until a team takes them in: "
        "'octo-appliance team add-member TEAM USER'.",
    )
    create.add_argument("username", metavar="USERNAME", help="letters, digits and . _ @ -")
    create.add_argument("--display-name", default="", metavar="TEXT")
    create.add_argument("--email", default="", metavar="ADDRESS")
    create.add_argument(
        "--password-file",
        type=Path,
        metavar="F",
        help="read the password from F ('-': stdin; at least 12 characters); without it the "
        "user has API keys only",
    )
    add_client_options(create)
    create.set_defaults(handler=run_create)
    add_show(actions, USERS)


def run_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "username": args.username,
        "display_name": args.display_name,
        "email": args.email,
    }
    if args.password_file is not None:
        body["password"] = read_secret(args.password_file, "password")
    with open_client(args) as client:
        item = client.post("/users", body)
    hint = f"Give them permissions with: octo-appliance team add-member TEAM {item['username']}"
    return created(Output(args.json), USERS, item, hint)
