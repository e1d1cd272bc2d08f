"""``run-script``: substitute ``#{...}`` in a script, then run it with the helpers.

Arguments: ``syntax`` (bash, sh, python, pwsh), ``body``; optional ``substitute`` (default
true), ``interpreter`` (program name or path, e.g. ``python3.12``) and
``cancel_grace_seconds`` (default 10). Unresolved references fail before anything runs.
"""

from __future__ import annotations

from typing import Any

from ..cancellation import CancelToken
from ..conventions.target import agent_variables
from ..errors import BadInputError, RunnerError
from ..protocol import Arguments, EventWriter, Request
from ..scripts import host
from ..scripts.launch import SYNTAXES
from ..substitution import evaluate_variables, substitute
from ..workdir import ensure_directory
from . import Outcome, script_outcome


def run(request: Request, events: EventWriter, cancel: CancelToken) -> Outcome:
    job = script_job(request.arguments, request, "run-script")
    return script_outcome(host.run(job, events, cancel))


def script_job(values: Any, request: Request, command: str) -> host.ScriptJob:
    """Validate script arguments, substitute the body, and prepare the work directory."""
    if not isinstance(values, dict):
        raise BadInputError(f"{command}: the script must be an object with syntax and body")
    args = Arguments(values, command)
    syntax = args.string("syntax", choices=SYNTAXES)
    body = args.string("body")
    if request.work_dir is None:
        raise BadInputError(f"{command}: the request needs 'work_dir' to run a script")
    variables = {**request.variable_map(), **agent_variables(request.context)}
    if args.boolean("substitute", True):
        try:
            body = substitute(body, variables)
        except RunnerError as exc:
            raise RunnerError(f"the script was not run: {exc.message}", hint=exc.hint) from exc
    return host.ScriptJob(
        syntax=syntax,
        body=body,
        variables=evaluate_variables(variables),
        work_dir=ensure_directory(request.work_dir),
        interpreter=args.optional_string("interpreter"),
        cancel_grace_seconds=args.number("cancel_grace_seconds", 10.0),
    )
