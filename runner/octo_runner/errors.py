"""The runner's exception root: every deliberate failure carries a hint and an exit code.

The runner may not import ``octo_appliance``, so it has its own small tree::

    RunnerError              exit code 1: the runner could not do the work
    ├── BadInputError        exit code 2: the request on stdin is malformed
    ├── SubstitutionError    a ``#{...}`` template cannot be evaluated (substitution.py)
    └── MalformedServiceMessage   a ``##octo[...]`` line does not parse (service_messages.py)
"""

from __future__ import annotations


class RunnerError(Exception):
    """A failure the runner reports as an error event and a failed result."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class BadInputError(RunnerError):
    """The JSON request on stdin is not valid for this protocol version."""

    exit_code = 2


class SubstitutionError(RunnerError):
    """A ``#{...}`` template cannot be evaluated (subclasses live in substitution.py)."""
