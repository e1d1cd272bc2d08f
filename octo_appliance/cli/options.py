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
from pathlib import Path

from octo_appliance.cli.client import DEFAULT_TIMEOUT, ApiClient, Connection
from octo_appliance.exceptions import ConfigError
from octo_appliance.pinned_http import parse_server_url, parse_thumbprint

SERVER_ENV = "OCTO_SERVER"
API_KEY_ENV = "OCTO_API_KEY"
THUMBPRINT_ENV = "OCTO_SERVER_THUMBPRINT"


def add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        metavar="URL",
        help=f"the appliance, https://HOST:PORT as its banner prints it (default: ${SERVER_ENV})",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"API key (visible to other users in ps: prefer --api-key-file or ${API_KEY_ENV})",
    )
    group.add_argument("--api-key-file", metavar="F", type=Path, help="read the API key from F")
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
    """From --api-key, --api-key-file or $OCTO_API_KEY, in that order."""
    if args.api_key:
        key = str(args.api_key)
    elif args.api_key_file is not None:
        try:
            key = args.api_key_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not readable text"
            raise ConfigError(
                f"cannot read the API key file {args.api_key_file}: {reason}",
                hint="check the path and its permissions",
            ) from None
    else:
        key = os.environ.get(API_KEY_ENV, "")
    key = key.strip()
    if not key:
        raise ConfigError(
            "no API key given",
            hint=f"set ${API_KEY_ENV} or pass --api-key-file F; create a key in the portal or "
            "with 'octo-appliance api-key create --user NAME' on the appliance host",
        )
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigError(
            "the API key contains spaces or control characters",
            hint="give the key alone (a file may end with a newline)",
        )
    return key


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


def open_client(args: argparse.Namespace) -> ApiClient:
    """Check the options, pin the server when a thumbprint is given, and return the client."""
    return ApiClient(connection(args))
