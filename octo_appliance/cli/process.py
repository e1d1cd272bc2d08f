"""``octo-appliance process show|export|import``: a project's deployment process.

``export`` writes the steps as a JSON file (:mod:`octo_appliance.cli.process_file`) that can
live in the team's repository; ``import`` shows what the file changes, step by step, and
applies it with one PUT that names the version it compared against (a 409 if the process
changed in between). Exporting and importing the same file changes nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli import process_file
from octo_appliance.cli.changes import Diff
from octo_appliance.cli.client import ApiClient
from octo_appliance.cli.documents import (
    ConfigFile,
    add_file_actions,
)
from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, table
from octo_appliance.cli.resources import Names, joined, segment


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "process", help="show, export or import a project's deployment process"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    show = actions.add_parser("show", help="a project's steps, in run order")
    show.add_argument("--project", required=True, metavar="PROJECT", help="project id or name")
    add_client_options(show)
    show.set_defaults(handler=run_show)

    add_file_actions(
        actions,
        PROCESS_FILE,
        "Environments are named by name; apply the file with 'process import'.",
        "Steps are matched by name; a change lists the fields it touches.",
    )


def _path(project: str) -> str:
    return f"/projects/{segment(project)}/process"


def _stored(client: ApiClient, project: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The steps with environment names, and the API's answer (with its ``version``)."""
    answer = client.get(_path(project))
    return process_file.stored_steps(answer["steps"], Names(client).environments), answer


def _plan(
    stored: list[dict[str, Any]], wanted: list[dict[str, Any]], answer: dict[str, Any]
) -> tuple[Diff, dict[str, Any]]:
    """The diff, and a PUT naming the version compared against (409 if it changed since)."""
    return process_file.plan(stored, wanted), {"version": answer["version"], "steps": wanted}


PROCESS_FILE = ConfigFile(
    title="the process",
    items="step(s)",
    path=_path,
    stored=_stored,
    export=process_file.export_document,
    read=process_file.read_steps,
    plan=_plan,
)


def _condition(step: dict[str, Any]) -> str:
    condition = step.get("condition", "success")
    return f"if {condition['variable']}" if isinstance(condition, dict) else str(condition)


def run_show(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        steps, answer = _stored(client, args.project)
    rows = [
        [
            str(index),
            step["name"],
            step["type"],
            joined(step["roles"]),
            joined(step["environments"], "all"),
            _condition(step),
        ]
        for index, step in enumerate(steps, 1)
    ]
    headers = ["#", "STEP", "TYPE", "ROLES", "ENVIRONMENTS", "RUNS"]
    lines = table(rows, headers) if rows else ["No steps yet."]
    out.result(answer, [*lines, f"(process version {answer['version']})"])
    return 0
