"""``octo-appliance script run``: run one script on many targets at once (the script console).

Targets are chosen by environment and roles, or named directly; the body comes from a file
(``--file``, ``-`` for stdin) or from ``--body``. ``#{Name}`` references are substituted on
each target (``--variable NAME=VALUE`` defines more). Like ``deploy --wait``, the command
follows the task's log live and exits 0 when the script succeeded on every target.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from octo_appliance.cli.documents import read_input
from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output
from octo_appliance.cli.task import started
from octo_appliance.exceptions import ConfigError

SYNTAXES = ("bash", "sh", "python", "pwsh")
SUFFIXES = {".sh": "bash", ".bash": "bash", ".py": "python", ".ps1": "pwsh"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("script", help="run a script on targets (script console)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_parser = actions.add_parser(
        "run",
        help="run a script on the targets of an environment and roles, or on named targets",
        description="Run a script on every matching target at once and follow its log; exit 0 "
        "when it succeeded everywhere, 1 otherwise.",
    )
    run_parser.add_argument("--environment", metavar="ENV", help="environment id or name")
    run_parser.add_argument(
        "--role", action="append", default=[], metavar="ROLE", help="only targets with this role"
    )
    run_parser.add_argument(
        "--target", action="append", default=[], metavar="TARGET", help="this target (repeatable)"
    )
    body = run_parser.add_mutually_exclusive_group(required=True)
    body.add_argument("--file", type=Path, metavar="F", help="the script ('-': read stdin)")
    body.add_argument("--body", metavar="TEXT", help="the script itself")
    run_parser.add_argument(
        "--syntax",
        choices=SYNTAXES,
        help="default: from the file's suffix (.sh, .py, .ps1), else bash",
    )
    run_parser.add_argument(
        "--variable",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for #{NAME} (repeatable; not for secrets: argv is visible in ps)",
    )
    run_parser.add_argument(
        "--script-timeout", type=int, metavar="SECONDS", help="stop the script after this long"
    )
    run_parser.add_argument(
        "--window",
        type=int,
        metavar="N",
        help="run on at most N targets at once, the next as one finishes (default: all at once)",
    )
    run_parser.add_argument(
        "--no-wait", action="store_true", help="print the task id and return at once"
    )
    add_client_options(run_parser)
    run_parser.set_defaults(handler=run)


def _body(args: argparse.Namespace) -> tuple[str, str]:
    """(syntax, body) of the script the options give."""
    if args.body is not None:
        return args.syntax or "bash", str(args.body)
    path: Path = args.file
    return args.syntax or SUFFIXES.get(path.suffix, "bash"), read_input(path, "script")


def _variables(pairs: list[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(
                f"--variable {pair!r} is not NAME=VALUE", hint="e.g. --variable Port=80"
            )
        result[name.strip()] = value
    return result


def run(args: argparse.Namespace) -> int:
    if not args.environment and not args.target:
        raise ConfigError(
            "say where to run the script",
            hint="pass --environment ENV (and --role ROLE), or --target TARGET",
        )
    syntax, text = _body(args)
    if not text.strip():
        raise ConfigError("the script is empty", hint="give it with --file F or --body TEXT")
    request: dict[str, Any] = {
        "roles": args.role,
        "targets": args.target,
        "syntax": syntax,
        "body": text,
        "variables": _variables(args.variable),
    }
    if args.environment:
        request["environment"] = args.environment
    if args.script_timeout is not None:
        request["timeout"] = args.script_timeout
    if args.window is not None:
        request["window"] = args.window
    out = Output(args.json)
    with open_client(args) as client:
        queued = client.post("/scripts", request)
        names = ", ".join(t["name"] for t in queued["targets"])
        header = f"Running the {syntax} script on {names}: task {queued['task_id']}."
        return started(client, out, queued, header, "the script", wait=not args.no_wait)
