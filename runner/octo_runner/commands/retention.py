"""``retention``: keep the last N releases of a project on this target, delete older ones.

Arguments: ``project`` (name or id), ``keep`` (>= 1), optional ``environment`` (default:
every environment of the project, each keeping ``keep`` releases). Context: ``journal_file``,
``applications_dir`` and ``cache_dir`` (absolute paths). The policy is described in
``conventions/retention.py`` and docs/conventions.md.
"""

from __future__ import annotations

from ..cancellation import CancelToken
from ..conventions import retention
from ..conventions.journal import Journal
from ..conventions.target import TargetPaths
from ..protocol import Arguments, EventWriter, Request
from . import Outcome
from .deploy_package import keep_argument

COMMAND = "retention"


def run(request: Request, events: EventWriter, cancel: CancelToken) -> Outcome:
    args = Arguments(request.arguments, COMMAND)
    project = args.string("project")
    keep = keep_argument(args, "keep", required=True)
    assert keep is not None
    environment = args.optional_string("environment")
    paths = TargetPaths.from_request(request, COMMAND)
    cleanup = retention.apply(
        Journal(paths.journal_file, events),
        paths.applications_dir,
        paths.cache_dir,
        project,
        keep,
        events,
        environment=environment,
    )
    message = (
        f"Retention for {project}: kept {cleanup.kept} and removed {cleanup.removed} "
        f"installation(s)"
    )
    return Outcome(
        0,
        True,
        message,
        {
            "kept": cleanup.kept,
            "removed": cleanup.removed,
            "deleted_folders": cleanup.folders,
            "deleted_packages": cleanup.packages,
        },
    )
