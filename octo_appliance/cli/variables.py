"""``octo-appliance variables list|set|delete|export|import``: a project's variables.

The API reads and replaces a project's variables as one list (``PUT`` in one transaction), so
every change here reads the list, changes it and writes it back whole: stored sensitive values
travel as their ids and are kept, never read. ``export``/``import`` keep the list in a JSON
file (:mod:`octo_appliance.cli.variable_file`) that can live in the team's repository and be
applied by its CI; import shows the diff and applies it with one PUT.

A sensitive value is never taken from the command line (other users see it in ``ps``):
``set --sensitive`` reads it from ``--value-file`` (``-``: stdin).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from octo_appliance.cli import variable_file
from octo_appliance.cli.changes import Diff
from octo_appliance.cli.client import ApiClient, ClientError
from octo_appliance.cli.documents import (
    ConfigFile,
    add_file_actions,
    read_secret,
)
from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, table
from octo_appliance.cli.resources import Names, segment
from octo_appliance.cli.variable_file import Entry
from octo_appliance.exceptions import ConfigError

SCOPE_OPTIONS = (
    ("--environment", "environments", "ENV", "only in this environment"),
    ("--role", "roles", "ROLE", "only on targets with this role"),
    ("--target", "targets", "TARGET", "only on this target"),
    ("--step", "steps", "STEP", "only in this step"),
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "variables", help="list, set, delete, export or import a project's variables"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    _action(actions, "list", run_list, help="a project's variables (sensitive ones hidden)")
    put = _action(
        actions,
        "set",
        run_set,
        scoped=True,
        help="set a variable (the one with this name and scope, or a new one)",
        description="Set the variable with this name and exactly this scope (no scope option: "
        "unscoped), or add it. A sensitive value is read from --value-file, never from argv.",
    )
    put.add_argument("value", nargs="?", metavar="VALUE", help="the value (not for secrets)")
    put.add_argument(
        "--value-file", type=Path, metavar="F", help="read the value from F ('-': stdin)"
    )
    put.add_argument("--sensitive", action="store_true", help="seal it; never shown again")
    delete = _action(
        actions,
        "delete",
        run_delete,
        scoped=True,
        help="delete a variable",
        description="Delete the variable with this name; when several scopes hold it, name the "
        "scope with the scope options, or pass --all-scopes.",
    )
    delete.add_argument("--all-scopes", action="store_true", help="every scope of this name")
    add_file_actions(
        actions,
        VARIABLES_FILE,
        'Sensitive values are never written, only {"keep": true}; apply the file with '
        "'variables import'.",
        '{"keep": true} keeps a stored sensitive value.',
    )


def _action(
    actions: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    scoped: bool = False,
    **texts: str,
) -> argparse.ArgumentParser:
    """An action on one project's variables; ``scoped``: on one NAME in one scope."""
    parser: argparse.ArgumentParser = actions.add_parser(name, **texts)
    if scoped:
        parser.add_argument("name", metavar="NAME")
    parser.add_argument("--project", required=True, metavar="PROJECT", help="project id or name")
    if scoped:
        for option, dest, metavar, text in SCOPE_OPTIONS:
            parser.add_argument(
                option, dest=dest, action="append", default=[], metavar=metavar, help=text
            )
    add_client_options(parser)
    parser.set_defaults(handler=handler)
    return parser


def _path(project: str) -> str:
    return f"/projects/{segment(project)}/variables"


def _stored(client: ApiClient, project: str) -> tuple[list[tuple[str, Entry]], dict[str, Any]]:
    """The project's variables as (id, entry) with names in scopes, and the API's answer."""
    answer = client.get(_path(project))
    names = Names(client)

    def by_name(kind: str, ids: list[str]) -> list[str]:
        return names.environments(ids) if kind == "environments" else names.targets(ids)

    return variable_file.stored_entries(answer["variables"], by_name), answer


def _put(client: ApiClient, project_id: str, body: list[dict[str, Any]]) -> Any:
    return client.request("PUT", _path(project_id), json={"variables": body})


def _plan(
    stored: list[tuple[str, Entry]], wanted: list[Entry], _: dict[str, Any]
) -> tuple[Diff, dict[str, Any]]:
    diff, body = variable_file.plan(stored, wanted)
    return diff, {"variables": body}


VARIABLES_FILE = ConfigFile(
    title="the variables",
    items="variable(s)",
    path=_path,
    stored=_stored,
    export=variable_file.export_document,
    read=variable_file.read_entries,
    plan=_plan,
)


def _scope(args: argparse.Namespace) -> dict[str, list[str]]:
    return {dest: getattr(args, dest) for _, dest, _, _ in SCOPE_OPTIONS}


def _shown_value(entry: Entry) -> str:
    if entry.sensitive:
        return "********"
    return "(no value)" if entry.value is None else entry.value.replace("\n", "\\n")


def run_list(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        stored, answer = _stored(client, args.project)
    rows = [[e.name, _shown_value(e), e.scope_text() or "-"] for _, e in stored]
    lines = table(rows, ["NAME", "VALUE", "SCOPE"]) if rows else ["No variables."]
    out.result(answer, lines)
    return 0


def _value(args: argparse.Namespace) -> str:
    if args.value is not None and args.value_file is not None:
        raise ConfigError("give the value or --value-file, not both", hint="drop one of them")
    if args.value_file is not None:
        return read_secret(args.value_file, "value")
    if args.value is None:
        raise ConfigError("no value given", hint="pass VALUE, or --value-file F ('-': stdin)")
    if args.sensitive:
        raise ConfigError(
            "a sensitive value on the command line is visible to other users in ps",
            hint="pass it with --value-file F, or --value-file - on stdin",
        )
    return str(args.value)


def run_set(args: argparse.Namespace) -> int:
    value = _value(args)
    wanted = Entry(
        name=args.name,
        value=value,
        sensitive=args.sensitive,
        scope=variable_file.scope_of(_scope(args)),
    )
    out = Output(args.json)
    with open_client(args) as client:
        stored, answer = _stored(client, args.project)
        entries = [entry for _, entry in stored]
        keys = [entry.key for entry in entries]
        if wanted.key in keys:
            entries[keys.index(wanted.key)] = wanted
        else:
            entries.append(wanted)
        diff, body = variable_file.plan(stored, entries)
        result = _put(client, answer["project_id"], body) if not diff.empty else answer
    verb = "Unchanged" if diff.empty else ("Added" if wanted.key not in keys else "Set")
    out.result(result, [f"{verb} {wanted.label()} in project {args.project}."])
    return 0


def run_delete(args: argparse.Namespace) -> int:
    scope = variable_file.scope_of(_scope(args))
    out = Output(args.json)
    with open_client(args) as client:
        stored, answer = _stored(client, args.project)
        named = [e for _, e in stored if e.name.casefold() == args.name.casefold()]
        if scope:
            probe = Entry(name=args.name, value=None, scope=scope)
            named = [e for e in named if e.key == probe.key]
        if not named:
            raise ClientError(
                f"project {args.project} has no variable {args.name}"
                + (" with that scope" if scope else ""),
                hint=f"list them with 'octo-appliance variables list --project {args.project}'",
            )
        if len(named) > 1 and not args.all_scopes:
            raise ClientError(
                f"{args.name} has {len(named)} scopes: " + ", ".join(e.label() for e in named),
                hint="name one with --environment/--role/--target/--step, or pass --all-scopes",
            )
        gone = {e.key for e in named}
        _, body = variable_file.plan(stored, [e for _, e in stored if e.key not in gone])
        result = _put(client, answer["project_id"], body)
    out.result(result, [f"Deleted {e.label()} from project {args.project}." for e in named])
    return 0
