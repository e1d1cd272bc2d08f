"""Helpers for Python deployment scripts run by the Octo runner: ``import octo``.

The runner loads the step's variables into ``octo.variables`` before the script starts (they
arrive on an inherited pipe, never via files, argv or the environment). Functions print
``##octo[...]`` service messages on stdout, which the runner turns into events. The Octopus
Deploy names (``set_octopusvariable``, ``get_octopusvariable``, ``createartifact``,
``updateprogress``, ``failstep``, ``printverbose`` ...) are provided as aliases.
"""

from __future__ import annotations

import base64
import os
import sys
from typing import NoReturn

#: Every variable of the step, by exact name.
variables: dict[str, str] = {}


def _b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def _send(kind: str, /, **attributes: str) -> None:
    text = "".join(f" {key}='{_b64(value)}'" for key, value in attributes.items())
    sys.stdout.write(f"##octo[{kind}{text}]\n")
    sys.stdout.flush()


def get_variable(name: str, default: str | None = None) -> str | None:
    """The value of variable ``name`` (exact name), or ``default``."""
    return variables.get(name, default)


def set_variable(name: str, value: str, sensitive: bool = False) -> None:
    """Make ``name`` an output variable of this step; ``sensitive`` masks it in logs too."""
    _send("setVariable", name=name, value=str(value), sensitive=str(bool(sensitive)))


def mask(value: str) -> None:
    """Mask ``value`` in every later log line."""
    _send("mask", value=str(value))


def create_artifact(path: str, name: str | None = None) -> None:
    """Collect the file at ``path`` as an artifact of the deployment."""
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise FileNotFoundError(f"create_artifact: no such file: {path}")
    length = str(os.path.getsize(full))
    _send("createArtifact", path=full, name=name or os.path.basename(full), length=length)


def update_progress(percentage: int, message: str = "") -> None:
    _send("progress", percentage=str(int(percentage)), message=message)


def fail_step(message: str | None = None) -> NoReturn:
    """Fail the step with ``message`` as its result and stop the script (exit code 1)."""
    if message:
        _send("resultMessage", message=message)
    sys.exit(1)


def _write(level: str, text: str) -> None:
    sys.stdout.flush()
    sys.stdout.write(f"##octo[stdout-{level}]\n{text}\n##octo[stdout-default]\n")
    sys.stdout.flush()


def write_verbose(text: str) -> None:
    _write("verbose", text)


def write_highlight(text: str) -> None:
    _write("highlight", text)


def write_wait(text: str) -> None:
    _write("wait", text)


def write_warning(text: str) -> None:
    _write("warning", text)


def write_error(text: str) -> None:
    _write("error", text)


# Octopus Deploy's names for the same helpers.
octopusvariables = variables
get_octopusvariable = get_variable
set_octopusvariable = set_variable
createartifact = create_artifact
updateprogress = update_progress
failstep = fail_step
printverbose = write_verbose
printhighlight = write_highlight
printwait = write_wait
printwarning = write_warning

#: Names a script sees as globals, as Octopus's Python bootstrap provides them.
SCRIPT_GLOBALS = (
    "octopusvariables",
    "get_octopusvariable",
    "set_octopusvariable",
    "createartifact",
    "updateprogress",
    "failstep",
    "printverbose",
    "printhighlight",
    "printwait",
    "printwarning",
)
