"""``octo-appliance``: one module per command group, each adding its own subparser.

Every command prints what it did; a deliberate failure prints ``error: ...`` and a hint on
stderr and exits non-zero (2 for bad settings or usage, 1 otherwise), never a traceback.
The commands that talk to a running appliance (release, deploy, task, interruption, package,
environment, project, variables, process, script, target, lifecycle, team, user; see
docs/cli.md) also turn an unexpected error into such a message.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NamedTuple

from octo_appliance.exceptions import OctoError, exit_status


class Command(NamedTuple):
    """One command group: its name and the one line ``octo-appliance --help`` shows for it
    (the same words its module gives ``add_parser``: ``tests/unit/test_cli_lazy.py`` checks
    that they agree)."""

    name: str
    help: str

    @property
    def module(self) -> str:
        """The module under ``octo_appliance.cli`` that registers it: ``api-key``, ``api_key``."""
        return self.name.replace("-", "_")


#: every command group, in ``--help`` order. A module is imported only when its command is
#: the one being run, so ``--help`` imports none and ``version`` only its own: adding a
#: command group is one row here and its module with a ``register(subparsers)``.
COMMANDS: tuple[Command, ...] = (
    Command("serve", "run the appliance: HTTPS (HTTP/1.1, HTTP/2) and HTTP/3 on one port"),
    Command("api-key", "manage API keys"),
    Command("registration-token", "create, list or revoke tokens that only register targets"),
    Command("agent", "print the one-line agent install for a target, or update agents"),
    Command("master-key", "back up or rotate the master key"),
    Command("backup", "write a backup of the database and sealed files (never the master key)"),
    Command("restore", "restore a backup into an empty data dir and database (the server stopped)"),
    Command(
        "install", "install the appliance as a system service (as root; --uninstall to remove it)"
    ),
    Command("release", "create or list a project's releases"),
    Command("deploy", "deploy a release to an environment (--wait: follow it to the end)"),
    Command("task", "show, follow or cancel a server task (deployments are tasks)"),
    Command("interruption", "list or answer deployments waiting for a person"),
    Command("package", "push packages to the feed, or list them"),
    Command("environment", "list, create, show or delete environments"),
    Command("project", "list, create, show or delete projects"),
    Command("variables", "list, set, delete, export or import a project's variables"),
    Command("process", "show, export or import a project's deployment process"),
    Command("script", "run a script on targets (script console)"),
    Command("target", "list, show, health-check or delete targets (agents register themselves)"),
    Command("lifecycle", "list, create or show lifecycles"),
    Command("team", "list, create or show teams; add members, grant roles"),
    Command("user", "list, create or show users"),
    Command("plugin", "list, install, remove, disable or enable plugins (data dir, offline)"),
    Command("node", "list the appliance nodes, or drain or undrain one"),
    Command("version", "print the version"),
)


def build_parser(
    commands: Sequence[Command] = COMMANDS, *, load: bool = True
) -> argparse.ArgumentParser:
    """The parser; with ``load``, each command's module registers its full subparser, without,
    each command is a bare entry with its help line (enough for ``--help`` and for naming
    an unknown command), and no command module is imported."""
    parser = argparse.ArgumentParser(
        prog="octo-appliance",
        description="Octo Appliance: deployment orchestrator (portal, REST API, engine, vault).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        if load:
            importlib.import_module(f"{__name__}.{command.module}").register(subparsers)
        else:
            subparsers.add_parser(command.name, help=command.help)
    return parser


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Only the named command's module when the first word names a command: a client
    command then starts without importing the server, and ``--help`` imports nothing."""
    named = [command for command in COMMANDS if argv and argv[0] == command.name]
    return build_parser(named) if named else build_parser(load=False)


#: the hint of an error raised without one: every error is two lines (docs/cli.md)
FALLBACK_HINT = "see 'octo-appliance COMMAND --help' and docs/cli.md"


def report_error(exc: OctoError, prog: str = "octo-appliance") -> None:
    print(f"{prog}: error: {exc.message}", file=sys.stderr)
    print(f"{prog}: hint: {exc.hint or FALLBACK_HINT}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Importing a command's module (for serve: the whole server, some 150,000 objects, none of
    # them garbage) makes the cyclic collector walk the new objects again and again: paused,
    # the start takes 8-12 % less CPU (docs/serving.md, "Start time").
    collecting = gc.isenabled()
    gc.disable()
    try:
        parser = parser_for(argv)
        args = parser.parse_args(argv)
    finally:
        if collecting:
            gc.enable()
    try:
        return exit_status(lambda: args.handler(args), report_error)
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
