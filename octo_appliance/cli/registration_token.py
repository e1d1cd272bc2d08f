"""``octo-appliance registration-token create|list|revoke``: tokens that only register targets.

``agent install-command`` (``cli/agent.py``) makes one and prints the one-line install that
carries it; ``create`` makes a bare one for ``octo-agent register --token-file``. A token is
shown once (the last line of ``create``'s output), like an API key.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, stamp
from octo_appliance.cli.resources import Resource, add_list, joined
from octo_appliance.exceptions import ConfigError

DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str = "--expires") -> int:
    """``90``, ``90s``, ``15m``, ``1h`` or ``7d`` as seconds."""
    match = DURATION.match(text.strip().lower())
    if match is None:
        raise ConfigError(f"{option} {text!r} is not a duration", hint="e.g. 15m, 1h or 7d")
    return int(match[1]) * UNITS[match[2]]


def _environments(t: dict[str, Any]) -> list[str]:
    return [e["name"] for e in t["environments"]]


def _uses(t: dict[str, Any]) -> str:
    return f"{t['uses']}/{t['max_uses']}"


TOKENS = Resource(
    noun="registration token",
    path="/registration-tokens",
    headers=["NAME", "ENVIRONMENTS", "ROLES", "MODE", "USES", "EXPIRES", "ID"],
    row=lambda t, _: [
        t["name"] or "-",
        joined(_environments(t)),
        joined(t["roles"]),
        t["mode"],
        _uses(t),
        stamp(t["expires_at"]),
        t["id"],
    ],
    detail=lambda t, _: [f"{t['name']} ({t['id']})"],
)


def add_scope_options(parser: argparse.ArgumentParser) -> None:
    """What a token allows: the options ``create`` and ``agent install-command`` share."""
    parser.add_argument(
        "--environment", action="append", required=True, metavar="ENV", help="repeatable"
    )
    parser.add_argument("--role", action="append", required=True, metavar="ROLE", help="repeatable")
    parser.add_argument(
        "--expires", default="1h", metavar="DURATION", help="e.g. 15m, 1h, 7d (default 1h)"
    )
    parser.add_argument(
        "--max-uses", type=int, default=1, metavar="N", help="registrations it allows (default 1)"
    )
    parser.add_argument("--name", default="", metavar="LABEL", help="a label for people")


def scope_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.max_uses < 1:
        raise ConfigError("--max-uses must be at least 1", hint="e.g. --max-uses 10")
    return {
        "name": args.name,
        "environments": list(args.environment),
        "roles": list(args.role),
        "expires_in": parse_duration(args.expires),
        "max_uses": args.max_uses,
    }


def token_lines(token: dict[str, Any]) -> list[str]:
    return [
        f"Registration token {token['id']}: registers {token['mode']} targets in "
        f"{joined(_environments(token))} with roles {joined(token['roles'])}, "
        f"{token['max_uses']} time(s), until {stamp(token['expires_at'])} UTC.",
    ]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "registration-token", help="create, list or revoke tokens that only register targets"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="create a registration token; the token is the last line of stdout"
    )
    add_scope_options(create)
    create.add_argument(
        "--mode", choices=("any", "listening", "polling"), default="any", help="default any"
    )
    add_client_options(create)
    create.set_defaults(handler=run_create)
    add_list(actions, TOKENS)
    revoke = actions.add_parser("revoke", help="revoke a registration token")
    revoke.add_argument("id", metavar="ID", help="the token's id (from list)")
    add_client_options(revoke)
    revoke.set_defaults(handler=run_revoke)


def run_create(args: argparse.Namespace) -> int:
    out = Output(args.json)
    body = scope_body(args) | {"mode": args.mode}
    with open_client(args) as client:
        token = client.post("/registration-tokens", body)
    out.result(token, [*token_lines(token), "It is shown once; store it now.", token["token"]])
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        deleted = client.request("DELETE", f"/registration-tokens/{args.id}")
    out.result(deleted, [f"Revoked registration token {args.id}."])
    return 0
