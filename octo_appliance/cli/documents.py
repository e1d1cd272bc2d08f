"""Reading and writing the JSON files of ``variables`` and ``process`` export/import, and the
one way both imports report their diff and apply it (or, with ``--dry-run``, do not)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from octo_appliance.cli.changes import Diff
from octo_appliance.cli.output import Output
from octo_appliance.exceptions import ConfigError

STDIO = "-"


def add_import_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("file", metavar="FILE", type=Path, help=f"the {what} file ('-': stdin)")
    parser.add_argument(
        "--project",
        metavar="PROJECT",
        help='project id or name (default: the file\'s "project")',
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change, change nothing"
    )


def add_export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True, metavar="PROJECT", help="project id or name")
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write it here (default: stdout)"
    )


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


def report_import(
    out: Output,
    args: argparse.Namespace,
    what: str,
    diff: Diff,
    apply: Callable[[], Any],
) -> int:
    """Print the diff, then apply it (one call) unless it is empty or ``--dry-run``."""
    document: dict[str, Any] = {"diff": diff.as_json(), "applied": False}
    if diff.empty:
        out.result(document, [f"No changes: {what} already match {args.file}."])
        return 0
    lines = [f"Changes to {what} ({diff.summary()}):", *diff.lines()]
    if args.dry_run:
        out.result(document, [*lines, "Dry run: nothing was changed."])
        return 0
    document["result"] = apply()
    document["applied"] = True
    out.result(document, [*lines, f"Applied to {what}."])
    return 0
