"""The runner's commands, by the name a request's ``command`` field uses.

A command takes the request, the event writer and the cancel token, emits its own progress
and log events, and returns an ``Outcome``; ``__main__`` turns that into the final result
event and the process exit code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..cancellation import CancelToken
from ..protocol import EventWriter, Request
from ..scripts.host import ScriptOutcome


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    success: bool
    message: str
    extra: dict[str, Any] = field(default_factory=dict)


Command = Callable[[Request, EventWriter, CancelToken], Outcome]


def script_outcome(outcome: ScriptOutcome, **extra: Any) -> Outcome:
    """The result of a command whose work was one script."""
    if outcome.canceled:
        message = outcome.cancel_reason or "canceled"
        return Outcome(outcome.exit_code, False, message, {"canceled": True, **extra})
    if outcome.success:
        message = outcome.result_message or "the script succeeded"
    else:
        message = outcome.result_message or f"the script failed with exit code {outcome.exit_code}"
    return Outcome(outcome.exit_code, outcome.success, message, dict(extra))


#: Command name -> module (imported only when asked for: the zipapp compiles every module it
#: imports from source on each start, so importing less starts faster).
COMMANDS = {
    "run-script": "run_script",
    "health-check": "health_check",
    "deploy-package": "deploy_package",
    "retention": "retention",
}


def load(name: str) -> Command | None:
    module = COMMANDS.get(name)
    if module is None:
        return None
    handler: Command = importlib.import_module(f"{__name__}.{module}").run
    return handler
