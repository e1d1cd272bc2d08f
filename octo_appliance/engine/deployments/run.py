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

    def variables(self, planned: PlannedStep, target: TargetInfo | None) -> VariableSet:
        """Everything a command of ``planned`` on ``target`` (None: the appliance) sees."""
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
