"""The API key a command line is given: ``--api-key``, ``--api-key-file`` or ``$OCTO_API_KEY``.

Shared by ``octo-agent register|deregister`` and the appliance's client commands, so both read,
check and refuse a key the same way. ``--api-key`` is visible to other users in ``ps``; the help
says so and points at the file or the environment. The key itself is never part of a message.
``octo-agent`` also takes a registration token in its place (``--token-file``, ``-`` for
standard input, or ``$OCTO_REGISTRATION_TOKEN``), read and checked the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from octo_appliance.exceptions import ConfigError
from octo_appliance.types import REGISTRATION_TOKEN_PREFIX

API_KEY_ENV = "OCTO_API_KEY"
TOKEN_ENV = "OCTO_REGISTRATION_TOKEN"
#: registration tokens start with this; no API key does (``OCTO-`` is followed by random text)


def is_registration_token(credential: str) -> bool:
    return credential.startswith(REGISTRATION_TOKEN_PREFIX)


def add_api_key_options(group: argparse._ArgumentGroup) -> None:
    """``--api-key`` and ``--api-key-file`` in ``group`` (a plain or mutually exclusive one)."""
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"API key (visible to other users in ps: prefer --api-key-file or ${API_KEY_ENV})",
    )
    group.add_argument("--api-key-file", metavar="F", type=Path, help="read the API key from F")


def add_token_options(group: argparse._ArgumentGroup) -> None:
    """``--token`` and ``--token-file`` (a registration token instead of an API key)."""
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"registration token (visible in ps: prefer --token-file or ${TOKEN_ENV})",
    )
    group.add_argument(
        "--token-file", metavar="F", help="read the registration token from F ('-': stdin)"
    )


def _read_file(path: str | Path, what: str) -> str:
    try:
        if str(path) == "-":
            return sys.stdin.readline()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not readable text"
        raise ConfigError(
            f"cannot read the {what} file {path}: {reason}",
            hint="check the path and its permissions",
        ) from None


def _checked(secret: str, what: str, missing_hint: str) -> str:
    secret = secret.strip()
    if not secret:
        raise ConfigError(f"no {what} given", hint=missing_hint)
    if any(ch.isspace() or not ch.isprintable() for ch in secret):
        raise ConfigError(
            f"the {what} contains spaces or control characters",
            hint=f"give the {what} alone (a file may end with a newline)",
        )
    return secret


def read_api_key(args: argparse.Namespace, *, missing_hint: str) -> str:
    """From --api-key, --api-key-file or $OCTO_API_KEY, in that order; a ConfigError when none
    gives a usable key (``missing_hint`` says where this command's user gets one)."""
    if args.api_key:
        key = str(args.api_key)
    elif args.api_key_file is not None:
        key = _read_file(args.api_key_file, "API key")
    else:
        key = os.environ.get(API_KEY_ENV, "")
    return _checked(key, "API key", missing_hint)


def read_credential(args: argparse.Namespace, *, missing_hint: str) -> str:
    """An API key or a registration token: the flags first (one of them at most), then
    ``$OCTO_API_KEY``, then ``$OCTO_REGISTRATION_TOKEN``."""
    if args.token:
        return _checked(str(args.token), "registration token", missing_hint)
    if args.token_file is not None:
        return _checked(_read_file(args.token_file, "token"), "registration token", missing_hint)
    if args.api_key or args.api_key_file is not None or os.environ.get(API_KEY_ENV):
        return read_api_key(args, missing_hint=missing_hint)
    return _checked(os.environ.get(TOKEN_ENV, ""), "API key or registration token", missing_hint)
