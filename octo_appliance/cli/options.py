"""The options every command that talks to a running appliance shares, and opening its client.

``--server URL`` (or ``$OCTO_SERVER``), the API key (``--api-key``, ``--api-key-file`` or
``$OCTO_API_KEY``; the first is visible to other users in ``ps``, so the others are preferred),
``--server-thumbprint`` (or ``$OCTO_SERVER_THUMBPRINT``) to pin a self-signed appliance,
``--timeout`` and ``--json``. They are added to each command (after its name), so
``octo-appliance deploy --help`` lists everything that command takes.
"""

from __future__ import annotations

import argparse
import math
import os

from octo_appliance.appliance_client.api_key_input import (
    API_KEY_ENV,
    add_api_key_options,
    read_api_key,
)
from octo_appliance.appliance_client.pinned_http import parse_server_url, parse_thumbprint
from octo_appliance.cli.client import DEFAULT_TIMEOUT, ApiClient, Connection
from octo_appliance.exceptions import ConfigError

SERVER_ENV = "OCTO_SERVER"
THUMBPRINT_ENV = "OCTO_SERVER_THUMBPRINT"


def add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        metavar="URL",
        help=f"the appliance, https://HOST:PORT as its banner prints it (default: ${SERVER_ENV})",
    )
    add_api_key_options(group)
    group.add_argument(
        "--server-thumbprint",
        metavar="SHA256",
        help="trust the appliance whose certificate has this SHA-256 thumbprint (printed at its "
        f"start; default: ${THUMBPRINT_ENV}); without it, the certificate must be signed by a "
        "CA this machine trusts",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for each answer (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout (for scripts) instead of text",
    )
    parser.set_defaults(client_command=True)


def _api_key(args: argparse.Namespace) -> str:
    return read_api_key(
        args,
        missing_hint=f"set ${API_KEY_ENV} or pass --api-key-file F; create a key in the portal or "
        "with 'octo-appliance api-key create --user NAME' on the appliance host",
    )


def connection(args: argparse.Namespace) -> Connection:
    """The connection the options describe; a ConfigError (exit 2) names what is missing."""
    server = (args.server or os.environ.get(SERVER_ENV, "")).strip()
    if not server:
        raise ConfigError(
            "no appliance given",
            hint=f"pass --server https://HOST:PORT (or set ${SERVER_ENV})",
        )
    parse_server_url(server)
    thumbprint = (args.server_thumbprint or os.environ.get(THUMBPRINT_ENV, "")).strip() or None
    if thumbprint is not None:
        thumbprint = parse_thumbprint(thumbprint)
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise ConfigError("--timeout must be more than 0 seconds", hint="e.g. --timeout 30")
    return Connection(server, _api_key(args), thumbprint, float(args.timeout))


def check_take(take: int) -> None:
    """``--take`` of a listing command: the API pages at most 1000 rows, so say so before asking."""
    if not 1 <= take <= 1000:
        raise ConfigError("--take must be between 1 and 1000", hint="e.g. --take 50")


def open_client(args: argparse.Namespace) -> ApiClient:
    """Check the options, pin the server when a thumbprint is given, and return the client."""
    return ApiClient(connection(args))
