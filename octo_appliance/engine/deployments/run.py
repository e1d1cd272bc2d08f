"""The state of one running deployment, shared by its steps: what was loaded, the plan, the
variables of each step and target, output variables so far, excluded targets, failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from octo_appliance.engine.deployments.loading import Loaded
from octo_appliance.engine.deployments.plan import Plan, PlannedStep, TargetInfo
from octo_appliance.engine.deployments.progress import Progress
from octo_appliance.engine.deployments.spec import DeploymentOptions
from octo_appliance.engine.tasks import RunningTask
from octo_appliance.engine.variables import (
    OutputVariables,
    Scope,
    VariableSet,
    both_prefixes,
    resolve,
)

if TYPE_CHECKING:
    from octo_appliance.engine.deployments.collaborators import DeploymentServices
    from octo_appliance.steps.base import StepType


@dataclass
class DeploymentRun:
    task: RunningTask
    services: DeploymentServices
    options: DeploymentOptions
    loaded: Loaded
    plan: Plan
    progress: Progress
    step_types: dict[str, StepType]
    outputs: OutputVariables = field(default_factory=OutputVariables)
    #: target ids dropped by a guided-failure ``exclude-target`` answer
    excluded: set[str] = field(default_factory=set)
    #: ``(step name, message)`` of every failed step, in order
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: ``(step index, target id) -> (inputs stamp, variables)`` kept by ``variables(keep=
    #: True)`` (a target's request properties) for the next call (its runner command), which
    #: takes and drops it when nothing they depend on changed in between: built once per
    #: target instead of twice (each holds every machine's output variables: O(N), issue 14)
    _variables: dict[tuple[int, str | None], tuple[tuple[int, int], VariableSet]] = field(
        default_factory=dict
    )

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def error_text(self) -> str:
        return "; ".join(f"step '{step}' failed: {message}" for step, message in self.failures)

    def system(self, step: str, target: TargetInfo | None) -> dict[str, str]:
        loaded = self.loaded
        values = {
            "Project.Id": loaded.project[0],
            "Project.Name": loaded.project[1],
            "Environment.Id": loaded.environment[0],
            "Environment.Name": loaded.environment[1],
            "Release.Id": loaded.release[0],
            "Release.Number": loaded.release[1],
            "Deployment.Id": loaded.deployment_id,
            "Deployment.Error": self.error_text(),
            "Task.Id": self.task.id,
            "Step.Name": step,
            "Action.Name": step,
        }
        if target is not None:
            values["Machine.Id"] = target.id
            values["Machine.Name"] = target.name
        return values

    def variables(
        self, planned: PlannedStep, target: TargetInfo | None, *, keep: bool = False
    ) -> VariableSet:
        """Everything a command of ``planned`` on ``target`` (None: the appliance) sees;
        ``keep``: kept for the next call for the same step and target."""
        key = (planned.index, None if target is None else target.id)
        stamp = (self.outputs.version, len(self.failures))
        kept = self._variables.pop(key, None)
        if kept is not None and kept[0] == stamp:
            variables = kept[1]
        else:
            variables = self._build_variables(planned, target)
        if keep:
            self._variables[key] = (stamp, variables)
        return variables

    def _build_variables(self, planned: PlannedStep, target: TargetInfo | None) -> VariableSet:
        env_id, env_name = self.loaded.environment
        scope = Scope(
            environment_id=env_id,
            environment_name=env_name,
            step=planned.spec.name,
            target_id=None if target is None else target.id,
            target_name=None if target is None else target.name,
            roles=frozenset() if target is None else target.roles,
        )
        return VariableSet.layered(
            resolve(self.loaded.variables, scope),
            self.outputs.for_machine(None if target is None else target.name),
            both_prefixes(self.system(planned.spec.name, target)),
        )

    def active_targets(self, planned: PlannedStep) -> list[TargetInfo]:
        return [t for t in planned.targets if t.id not in self.excluded]
