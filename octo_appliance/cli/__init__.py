"""``octo-appliance``: one module per command group, each adding its own subparser.

Every command prints what it did; a deliberate failure prints ``error: ...`` and a hint on
stderr and exits non-zero (2 for bad settings or usage, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from octo_appliance.exceptions import ConfigError, OctoError

COMMAND_MODULES: tuple[str, ...] = ("serve", "api_key", "master_key", "version")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octo-appliance",
        description="Octo Appliance: deployment orchestrator (portal, REST API, engine, vault).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def report_error(exc: OctoError, prog: str = "octo-appliance") -> None:
    print(f"{prog}: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"{prog}: hint: {exc.hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        report_error(exc)
        return 2
    except OctoError as exc:
        report_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
