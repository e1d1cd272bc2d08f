"""Everything that can be checked before a deployment touches a target.

Every running step, for every one of its targets (or the appliance): its step type is
loaded, its properties pass the step type's validation, its run condition reads, and every
``#{...}`` in its properties and condition resolves, every package it deploys was pinned by
the release and is still in the feed (references to output variables of steps
in earlier groups are allowed: their values come later). All problems are reported at once,
each naming the step, the target and the variable.
"""

from __future__ import annotations

from octo_appliance.engine.deployments.conditions import VARIABLE, parse_condition
from octo_appliance.engine.deployments.run import DeploymentRun
from octo_appliance.engine.deployments.spec import SpecError
from octo_appliance.engine.variables import (
    VariableProblem,
    substitute_properties,
    substitute_text,
)
from octo_appliance.plugin_api import property_problems

#: problems listed in the task's error (the rest are counted)
MAX_LISTED = 20


def problems(run: DeploymentRun) -> list[str]:
    found: list[str] = []
    earlier: list[str] = []
    for group in run.plan.groups():
        for planned in group:
            spec = planned.spec
            step_type = run.step_types.get(spec.type)
            if step_type is None:
                found.append(
                    f"step '{spec.name}': step type '{spec.type}' is not loaded on this "
                    "appliance (check GET /api/v1/plugins)"
                )
                continue
            for problem in property_problems(step_type, dict(spec.properties)):
                found.append(f"step '{spec.name}': {problem.field}: {problem.message}")
            for package_id in step_type.package_ids(dict(spec.properties)):
                if (spec.name, package_id) not in run.loaded.packages:
                    found.append(
                        f"step '{spec.name}': {run.loaded.package_problem(spec.name, package_id)}"
                    )
            try:
                condition = parse_condition(spec.condition, spec.name)
            except SpecError as exc:
                found.append(exc.message)
                condition = None
            targets = list(planned.targets) if planned.on_targets else [None]
            for target in targets:
                where = "on the appliance" if target is None else f"on target '{target.name}'"
                variables = run.variables(planned, target).mapping()
                try:
                    keep = step_type.runner_substituted
                    substitute_properties(spec.properties, variables, earlier, keep)
                except VariableProblem as exc:
                    found.append(f"step '{spec.name}' {where}: {exc.message}")
            if condition is not None and condition.kind == VARIABLE:
                try:
                    substitute_text(
                        condition.expression, run.variables(planned, None).mapping(), earlier
                    )
                except VariableProblem as exc:
                    found.append(f"step '{spec.name}': run condition: {exc.message}")
        earlier += [planned.spec.name for planned in group]
    return found


def describe(found: list[str]) -> str:
    listed = found[:MAX_LISTED]
    more = len(found) - len(listed)
    text = "; ".join(listed)
    return text + (f"; and {more} more" if more else "")
