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
from octo_appliance.cli.client import ApiClient
from octo_appliance.cli.documents import (
    add_export_options,
    add_import_options,
    project_of,
    read_document,
    report_import,
    write_document,
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

    export = actions.add_parser("export", help="write the process as a JSON file")
    add_export_options(export)
    add_client_options(export)
    export.set_defaults(handler=run_export)

    load = actions.add_parser(
        "import",
        help="make the process what a JSON file says (shows the diff)",
        description="Replace a project's process by the file's steps, in one transaction, "
        "after showing which steps are added, changed (and which fields) and removed.",
    )
    add_import_options(load, "process")
    add_client_options(load)
    load.set_defaults(handler=run_import)


def _path(project: str) -> str:
    return f"/projects/{segment(project)}/process"


def _stored(client: ApiClient, project: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The steps with environment names, and the API's answer (with its ``version``)."""
    answer = client.get(_path(project))
    return process_file.stored_steps(answer["steps"], Names(client).environments), answer


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


def run_export(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        project = client.get(f"/projects/{segment(args.project)}")
        steps, _ = _stored(client, project["id"])
    document = process_file.export_document(project["name"], steps)
    summary = f"Wrote {len(steps)} step(s) of project {project['name']}"
    return write_document(out, args.output, document, summary)


def run_import(args: argparse.Namespace) -> int:
    document = read_document(args.file)
    wanted = process_file.read_steps(document, str(args.file))
    project = project_of(args, document)
    out = Output(args.json)
    with open_client(args) as client:
        stored, answer = _stored(client, project)
        diff = process_file.plan(stored, wanted)
        body = {"version": answer["version"], "steps": wanted}
        return report_import(
            out,
            args,
            f"the process of project {project}",
            diff,
            lambda: client.request("PUT", _path(answer["project_id"]), json=body),
        )
