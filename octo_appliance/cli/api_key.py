"""``octo-appliance api-key create``: make an API key for a user (works beside a server)."""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.common import add_data_options, open_existing
from octo_appliance.db import User
from octo_appliance.db.api_keys import create_api_key
from octo_appliance.db.audit import record_event
from octo_appliance.exceptions import OctoError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("api-key", help="manage API keys")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="create an API key for a user; the key is the last line of stdout"
    )
    add_data_options(create)
    create.add_argument("--user", required=True, metavar="NAME", help="username (e.g. admin)")
    create.add_argument("--name", default="", metavar="LABEL", help="a label for the key")
    create.set_defaults(handler=run_create)


def run_create(args: argparse.Namespace) -> int:
    appliance = open_existing(args)
    try:
        with appliance.db.atomic():
            user = User.get_or_none(User.username == args.user)
            if user is None:
                raise OctoError(
                    f"no user named '{args.user}'",
                    hint="the first start creates 'admin'; list users with GET /api/v1/users",
                )
            row, key = create_api_key(user, args.name or "created with the CLI")
            record_event(
                user_id=None,
                username="cli",
                action="create",
                resource_type="api-key",
                resource_id=row.id,
                resource_name=row.name,
                details={"user": user.username},
            )
    finally:
        appliance.close()
    print(f"Created API key {row.id} ('{row.name}') for user {user.username}.")
    print("It is shown once; store it now. Send it as the X-Api-Key header.")
    print(key)
    return 0
