"""``manual-intervention``: pause the deployment until a member of the named teams approves
or rejects it, with instructions shown to them and their answer recorded.

Properties: ``instructions`` (text; ``#{...}`` is substituted), ``responsible_teams`` (team ids
or names; empty: anyone allowed to deploy to the environment may answer).
"""

from __future__ import annotations

from typing import Any

from octo_runner.substitution import TemplateSyntaxError, parse

from octo_appliance.plugin_api import PLUGIN_API_VERSION, StepTypeRegistry, hookimpl
from octo_appliance.plugin_api.properties import unknown_properties
from octo_appliance.plugin_api.steps import (
    FieldProblem,
    Property,
    StepContext,
    StepFailed,
    StepType,
)

KIND = "manual-intervention"
APPROVE, REJECT = "approve", "reject"
MAX_INSTRUCTIONS_CHARS = 65_536
MAX_TEAMS = 50
KNOWN = frozenset({"instructions", "responsible_teams"})


class ManualIntervention(StepType):
    name = "manual-intervention"
    summary = "Pause until a member of the responsible teams approves or rejects"
    properties = (
        Property(
            "instructions",
            "text",
            "What the person should check before answering; #{...} is substituted.",
            required=True,
            max_length=MAX_INSTRUCTIONS_CHARS,
        ),
        Property(
            "responsible_teams",
            "list",
            "Team ids or names whose members may answer (empty: anyone allowed to deploy).",
            default=[],
            max_length=MAX_TEAMS,
        ),
    )

    def validate(self, properties: dict[str, Any]) -> list[FieldProblem]:
        problems = unknown_properties(properties, KNOWN, "is not a property of manual-intervention")
        instructions = properties.get("instructions")
        if not isinstance(instructions, str) or not instructions.strip():
            problems.append(FieldProblem("instructions", "is required: what to check"))
        elif len(instructions) > MAX_INSTRUCTIONS_CHARS:
            problems.append(
                FieldProblem("instructions", f"is longer than {MAX_INSTRUCTIONS_CHARS} characters")
            )
        else:
            try:
                parse(instructions)
            except TemplateSyntaxError as exc:
                problems.append(FieldProblem("instructions", exc.message))
        teams = properties.get("responsible_teams", [])
        if not isinstance(teams, list) or not all(
            isinstance(team, str) and team.strip() and len(team) <= 200 for team in teams
        ):
            problems.append(
                FieldProblem("responsible_teams", "must be a list of team ids or names")
            )
        elif len(teams) > MAX_TEAMS:
            problems.append(FieldProblem("responsible_teams", f"names more than {MAX_TEAMS} teams"))
        return problems

    def targets_machines(self, properties: dict[str, Any]) -> bool:
        return False

    async def execute(self, ctx: StepContext) -> None:
        values = ctx.properties_for(None)
        answer = await ctx.interrupt(
            KIND,
            f"Approve the deployment to continue: {ctx.step.name}",
            str(values.get("instructions", "")),
            list(values.get("responsible_teams") or []),
            [APPROVE, REJECT],
        )
        if answer.result != APPROVE:
            notes = f": {answer.notes}" if answer.notes else ""
            who = answer.submitted_by or "someone"
            raise StepFailed(f"{ctx.step.name} was rejected by {who}{notes}")


OCTO_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def register_step_types(registry: StepTypeRegistry) -> None:
    registry.add(ManualIntervention)
