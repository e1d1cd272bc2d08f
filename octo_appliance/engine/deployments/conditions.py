"""Run conditions: whether a step runs, given how the deployment went so far.

``condition`` on a step is one of:

- ``"success"`` (the default): only when every step before it succeeded;
- ``"failure"``: only when a step before it failed;
- ``"always"``: whatever happened;
- a variable expression: ``{"variable": "#{RunMigrations}"}`` (also accepted:
  ``{"expression": ...}``, ``{"type": "variable", "expression": ...}`` and the string form
  ``"variable:#{RunMigrations}"``). The expression is substituted with the step's variables
  (no target: environment and step scope, output variables of earlier steps,
  ``Octo.Deployment.Error``) and the step runs when the result is true as ``#{if}`` judges it:
  not empty, not ``false``, not ``0``. It runs whether or not earlier steps failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from octo_appliance.engine.deployments.spec import SpecError

SUCCESS, FAILURE, ALWAYS, VARIABLE = "success", "failure", "always", "variable"


@dataclass(frozen=True)
class Condition:
    kind: str
    expression: str = ""

    def describe(self) -> str:
        if self.kind == VARIABLE:
            return f"when {self.expression} is true"
        return {
            SUCCESS: "when all previous steps succeeded",
            FAILURE: "when a previous step failed",
            ALWAYS: "always",
        }[self.kind]


def parse_condition(value: Any, step: str = "") -> Condition:
    """A step's ``condition`` as a :class:`Condition`; :class:`SpecError` when malformed."""
    if value is None or value == "":
        return Condition(SUCCESS)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in (SUCCESS, FAILURE, ALWAYS):
            return Condition(lowered)
        if lowered.startswith(VARIABLE + ":"):
            return _expression(value.split(":", 1)[1], step)
    if isinstance(value, Mapping):
        kind = value.get("type", VARIABLE)
        expression = value.get("variable", value.get("expression"))
        if kind in (SUCCESS, FAILURE, ALWAYS) and expression is None:
            return Condition(str(kind))
        if kind == VARIABLE and isinstance(expression, str):
            return _expression(expression, step)
    raise SpecError(
        f"step '{step}': condition must be success, failure, always or "
        '{"variable": "#{Expression}"}'
    )


def _expression(text: str, step: str) -> Condition:
    if not text.strip():
        raise SpecError(f"step '{step}': the variable condition has no expression")
    return Condition(VARIABLE, text.strip())


def should_run(condition: Condition, failed_before: bool, expression_value: str = "") -> bool:
    """Whether the step runs; ``expression_value`` is the substituted expression."""
    if condition.kind == SUCCESS:
        return not failed_before
    if condition.kind == FAILURE:
        return failed_before
    if condition.kind == ALWAYS:
        return True
    return expression_value.strip().lower() not in ("", "false", "0")
