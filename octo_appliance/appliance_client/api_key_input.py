"""The API key a command line is given: ``--api-key``, ``--api-key-file`` or ``$OCTO_API_KEY``.

Shared by ``octo-agent register|deregister`` and the appliance's client commands, so both read,
check and refuse a key the same way. ``--api-key`` is visible to other users in ``ps``; the help
says so and points at the file or the environment. The key itself is never part of a message.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from octo_appliance.exceptions import ConfigError

API_KEY_ENV = "OCTO_API_KEY"


def add_api_key_options(group: argparse._ArgumentGroup) -> None:
    """``--api-key`` and ``--api-key-file`` in ``group`` (a plain or mutually exclusive one)."""
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"API key (visible to other users in ps: prefer --api-key-file or ${API_KEY_ENV})",
    )
    group.add_argument("--api-key-file", metavar="F", type=Path, help="read the API key from F")


def read_api_key(args: argparse.Namespace, *, missing_hint: str) -> str:
    """From --api-key, --api-key-file or $OCTO_API_KEY, in that order; a ConfigError when none
    gives a usable key (``missing_hint`` says where this command's user gets one)."""
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
        raise ConfigError("no API key given", hint=missing_hint)
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigError(
            "the API key contains spaces or control characters",
            hint="give the key alone (a file may end with a newline)",
        )
    return key
