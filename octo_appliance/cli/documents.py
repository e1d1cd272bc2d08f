"""Reading and writing the JSON files of ``variables`` and ``process`` export/import, and the
one way both export and import (the diff, then one PUT unless ``--dry-run``): each command
group declares a :class:`ConfigFile` and hands it to :func:`run_export` and :func:`run_import`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo_appliance.cli.changes import Diff
from octo_appliance.cli.client import ApiClient
from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output
from octo_appliance.cli.resources import segment
from octo_appliance.exceptions import ConfigError

STDIO = "-"


def read_input(path: Path, what: str) -> str:
    """The text of a file given as an option, or of stdin for ``-``."""
    try:
        return sys.stdin.read() if str(path) == STDIO else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the {what} from {path}: {exc}", hint="check the path"
        ) from None


def read_secret(path: Path, what: str) -> str:
    """A password or value from a file or stdin, without its final line break."""
    return read_input(path, what).removesuffix("\n").removesuffix("\r")


def read_document(path: Path) -> Any:
    source = "stdin" if str(path) == STDIO else str(path)
    text = read_input(path, "file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            hint="export a file to see the format: 'octo-appliance variables export' or "
            "'octo-appliance process export'",
        ) from None


def project_of(args: argparse.Namespace, document: Any) -> str:
    """``--project``, else the project the file names."""
    named = document.get("project") if isinstance(document, dict) else None
    project = args.project or named
    if not isinstance(project, str) or not project:
        raise ConfigError(
            f"{args.file} names no project", hint="pass --project PROJECT (id or name)"
        )
    return project


def write_document(out: Output, path: Path | None, document: Any, summary: str) -> int:
    """The document on stdout, or in ``path`` with ``summary`` said on stdout."""
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if path is None or str(path) == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}", hint="check the path"
        ) from None
    out.result({"file": str(path), "summary": summary}, [f"{summary} to {path}."])
    return 0


@dataclass(frozen=True)
class ConfigFile:
    """How one part of a project's configuration travels as a file."""

    #: "the variables", "the process"
    title: str
    #: what the export counts: "variable(s)", "step(s)"
    items: str
    #: project id or name -> the API path read and replaced
    path: Callable[[str], str]
    #: (client, project) -> (the stored items as the file writes them, the API's answer)
    stored: Callable[[ApiClient, str], tuple[list[Any], dict[str, Any]]]
    #: (project name, stored items) -> the file's document
    export: Callable[[str, list[Any]], dict[str, Any]]
    #: (document, source) -> the file's items (a ConfigError names a malformed one)
    read: Callable[[Any, str], list[Any]]
    #: (stored, wanted, the API's answer) -> (the diff, the body of the PUT that applies it)
    plan: Callable[[list[Any], list[Any], dict[str, Any]], tuple[Diff, dict[str, Any]]]


def add_file_actions(actions: Any, kind: ConfigFile, export_note: str, import_note: str) -> None:
    """The ``export`` and ``import`` actions of a command group."""
    export = actions.add_parser(
        "export",
        help=f"write {kind.title} as a JSON file",
        description=f"Write {kind.title} of a project as JSON. {export_note}",
    )
    export.add_argument("--project", required=True, metavar="PROJECT", help="project id or name")
    export.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write it here (default: stdout)"
    )
    add_client_options(export)
    export.set_defaults(handler=lambda args: run_export(args, kind))

    load = actions.add_parser(
        "import",
        help=f"make {kind.title} what a JSON file says (shows the diff)",
        description=f"Replace {kind.title} of a project by the file's, in one transaction, "
        f"after showing what is added, changed and removed. {import_note}",
    )
    load.add_argument("file", metavar="FILE", type=Path, help="the JSON file ('-': stdin)")
    load.add_argument(
        "--project", metavar="PROJECT", help='project id or name (default: the file\'s "project")'
    )
    load.add_argument(
        "--dry-run", action="store_true", help="show what would change, change nothing"
    )
    add_client_options(load)
    load.set_defaults(handler=lambda args: run_import(args, kind))


def run_export(args: argparse.Namespace, kind: ConfigFile) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        project = client.get(f"/projects/{segment(args.project)}")
        stored, _ = kind.stored(client, project["id"])
    document = kind.export(project["name"], stored)
    summary = f"Wrote {len(stored)} {kind.items} of project {project['name']}"
    return write_document(out, args.output, document, summary)


def run_import(args: argparse.Namespace, kind: ConfigFile) -> int:
    """Print the diff, then apply it with one PUT unless it is empty or ``--dry-run``."""
    document = read_document(args.file)
    wanted = kind.read(document, str(args.file))
    project = project_of(args, document)
    what = f"{kind.title} of project {project}"
    out = Output(args.json)
    with open_client(args) as client:
        stored, answer = kind.stored(client, project)
        diff, body = kind.plan(stored, wanted, answer)
        result: dict[str, Any] = {"diff": diff.as_json(), "applied": False}
        if diff.empty:
            out.result(result, [f"No changes: {what} already match {args.file}."])
            return 0
        lines = [f"Changes to {what} ({diff.summary()}):", *diff.lines()]
        if args.dry_run:
            out.result(result, [*lines, "Dry run: nothing was changed."])
            return 0
        result["result"] = client.request("PUT", kind.path(answer["project_id"]), json=body)
    result["applied"] = True
    out.result(result, [*lines, f"Applied to {what}."])
    return 0
