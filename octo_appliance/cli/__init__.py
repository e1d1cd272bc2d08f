"""``octo-appliance``: one module per command group, each adding its own subparser.

Every command prints what it did; a deliberate failure prints ``error: ...`` and a hint on
stderr and exits non-zero (2 for bad settings or usage, 1 otherwise), never a traceback.
The commands that talk to a running appliance (release, deploy, task, interruption, package,
environment, project, variables, process, script, target, lifecycle, team, user; see
docs/cli.md) also turn an unexpected error into such a message.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from octo_appliance.exceptions import ConfigError, OctoError

COMMAND_MODULES: tuple[str, ...] = (
    "serve",
    "api_key",
    "master_key",
    "backup",
    "restore",
    "release",
    "deploy",
    "task",
    "interruption",
    "package",
    "environment",
    "project",
    "variables",
    "process",
    "script",
    "target",
    "lifecycle",
    "team",
    "user",
    "version",
)


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octo-appliance",
        description="Octo Appliance: deployment orchestrator (portal, REST API, engine, vault).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def modules_for(argv: Sequence[str]) -> tuple[str, ...]:
    """Only the named command's module when the first word names one (module ``api_key`` is
    command ``api-key``): a client command then starts without importing the whole server."""
    module = argv[0].replace("-", "_") if argv else ""
    return (module,) if module in COMMAND_MODULES else COMMAND_MODULES


#: the hint of an error raised without one: every error is two lines (docs/cli.md)
FALLBACK_HINT = "see 'octo-appliance COMMAND --help' and docs/cli.md"


def report_error(exc: OctoError, prog: str = "octo-appliance") -> None:
    print(f"{prog}: error: {exc.message}", file=sys.stderr)
    print(f"{prog}: hint: {exc.hint or FALLBACK_HINT}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(modules_for(argv))
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
    except BrokenPipeError:
        # stdout went away (``| head``): say nothing more, and keep Python's exit flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not getattr(args, "client_command", False):
            raise
        text = str(exc)
        for secret in (getattr(args, "api_key", None), os.environ.get("OCTO_API_KEY")):
            text = text.replace(secret, "********") if secret else text
        print(f"octo-appliance: error: unexpected {type(exc).__name__}: {text}", file=sys.stderr)
        print(
            "octo-appliance: hint: this is a bug in octo-appliance or an appliance of another "
            "version; please report it with the command that failed",
            file=sys.stderr,
        )
        return 1
    return code
