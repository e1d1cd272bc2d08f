"""``octo-appliance version``."""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance import __version__


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("version", help="print the version")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print(f"octo-appliance {__version__}")
    return 0
