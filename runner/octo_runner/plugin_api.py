"""The runner API for plugin commands: everything target-side code of a step plugin may use.

A plugin command is a function ``run(request, events, cancel) -> Outcome``, exactly like a
built-in command, shipped in a bundle with the plugin (docs/plugins.md, "Code on the
target"). It imports this module and nothing else of ``octo_runner``: the names here keep
their meaning within an :data:`API_VERSION`; the rest of the runner may change. Standard
library only, like the runner (Python 3.9 or newer on the target).

What it gets is what the built-in commands get: the request (arguments, variables with the
sensitive ones, context), the event writer (log lines, progress, output variables and
artifacts, every line masked) and the cancel token (SIGTERM from the agent). Scripts run
through :func:`run_script` get the same helpers, service messages and process-group
cancellation as ``run-script``.
"""

from __future__ import annotations

from typing import Any

from .cancellation import CancelToken
from .commands import Outcome, script_outcome
from .conventions.target import agent_variables
from .errors import BadInputError, RunnerError
from .protocol import Arguments, EventWriter, Request, Variable
from .scripts.host import ScriptOutcome
from .substitution import substitute as _substitute

#: bumped on an incompatible change of this module; a bundle names the version it was built
#: for (``api`` in its manifest) and a runner refuses one built for another
API_VERSION = 1
#: the exit code of a command that stopped because it was cancelled
CANCELED_EXIT_CODE = 143

Events = EventWriter

__all__ = [
    "API_VERSION",
    "CANCELED_EXIT_CODE",
    "Arguments",
    "BadInputError",
    "CancelToken",
    "EventWriter",
    "Events",
    "Outcome",
    "Request",
    "RunnerError",
    "ScriptOutcome",
    "Variable",
    "arguments",
    "canceled",
    "mask",
    "run_script",
    "script_outcome",
    "set_output",
    "substitute",
    "variables",
    "wait",
]


def arguments(request: Request, command: str) -> Arguments:
    """Typed access to the request's arguments; a wrong one is a ``BadInputError`` naming it
    (exit code 2), e.g. ``arguments(request, "http-check").number("timeout_seconds", 60)``."""
    return Arguments(request.arguments, command)


def variables(request: Request) -> dict[str, str]:
    """The target's variables, as a script sees them: the request's (a later duplicate name
    wins) plus the agent's own (``Octo.Tentacle.Agent.ApplicationDirectoryPath``)."""
    return {**request.variable_map(), **agent_variables(request.context)}


def substitute(text: str, request: Request, *, strict: bool = True) -> str:
    """``#{...}`` in ``text`` with the target's variables (``SubstitutionError`` names every
    missing one when ``strict``)."""
    return _substitute(text, variables(request), strict=strict)


def mask(events: EventWriter, value: str) -> None:
    """Hide ``value`` in every log line and message from now on (like ``##octo[mask]``)."""
    events.masker.add(value)


def set_output(events: EventWriter, name: str, value: str, sensitive: bool = False) -> None:
    """An output variable later steps read as ``Octopus.Action[Step].Output.<name>``; a
    sensitive value is also masked from now on (like ``##octo[setVariable]``)."""
    if sensitive:
        mask(events, value)
    events.output_variable(name, value, sensitive)


def run_script(
    request: Request,
    events: EventWriter,
    cancel: CancelToken,
    *,
    syntax: str,
    body: str,
    substitute: bool = True,
    interpreter: str | None = None,
    cancel_grace_seconds: float = 10.0,
) -> ScriptOutcome:
    """Run a script exactly as ``run-script`` does (helpers, service messages, masking,
    process-group cancellation) in the request's work dir; turn the result into the
    command's with :func:`script_outcome`."""
    from .commands.run_script import script_job
    from .scripts import host

    values: dict[str, Any] = {
        "syntax": syntax,
        "body": body,
        "substitute": substitute,
        "cancel_grace_seconds": cancel_grace_seconds,
    }
    if interpreter is not None:
        values["interpreter"] = interpreter
    return host.run(script_job(values, request, "plugin script"), events, cancel)


def wait(cancel: CancelToken, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when the command was cancelled meanwhile (stop then)."""
    return cancel.wait(max(0.0, seconds))


def canceled(cancel: CancelToken, **extra: Any) -> Outcome:
    """The outcome of a command that stopped because it was cancelled."""
    message = cancel.reason or "canceled"
    return Outcome(CANCELED_EXIT_CODE, False, message, {"canceled": True, **extra})
