"""Which steps of a release run in this deployment, on which targets, in which groups.

Pure (no database): :func:`plan_deployment` takes the process snapshot, the environment's
targets and the deployment's options. The rules (docs/deployments.md, "Execution"):

- a step whose ``environments`` list is not empty runs only in those environments (ids or
  names); a ``disabled`` step never runs; a step named in ``skip_steps`` is skipped,
  unless it is ``required`` (an error);
- a step that runs on targets runs on the environment's enabled targets that have any of its
  roles (no roles: every target of the environment), narrowed to the deployment's
  ``targets`` when given, minus ``exclude_targets``; targets whose last health check said
  ``Unavailable`` or ``Unhealthy`` are kept but marked, and fail when their turn comes;
- a ``start_with_previous`` step joins the group of the step that runs before it, and the
  steps of a group run at the same time; groups run one after another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from octo_appliance.engine.deployments.spec import StepSpec
from octo_appliance.exceptions import OctoError
from octo_appliance.transports.base import TargetAddress

#: health statuses that make a target fail its steps without being tried
UNAVAILABLE_STATUSES = frozenset({"Unavailable", "Unhealthy"})


class PlanError(OctoError):
    """The options do not fit the release (unknown step or target, skipping a required step)."""


@dataclass(frozen=True)
class TargetInfo:
    """A target of the environment, as the plan needs it."""

    id: str
    name: str
    roles: frozenset[str] = frozenset()
    health_status: str = "Unknown"
    address: TargetAddress | None = None

    @property
    def unavailable(self) -> bool:
        return self.health_status in UNAVAILABLE_STATUSES

    def matches(self, refs: Iterable[str]) -> bool:
        return bool({self.id, self.name} & set(refs))


@dataclass(frozen=True)
class PlannedStep:
    index: int
    spec: StepSpec
    run: bool
    #: why a step does not run ("not for this environment", "skipped on request")
    reason: str = ""
    on_targets: bool = True
    targets: tuple[TargetInfo, ...] = ()
    group: int = 0


@dataclass
class Plan:
    steps: list[PlannedStep] = field(default_factory=list)

    def groups(self) -> list[list[PlannedStep]]:
        """The running steps, grouped (``start_with_previous``), in order."""
        groups: dict[int, list[PlannedStep]] = {}
        for step in self.steps:
            if step.run:
                groups.setdefault(step.group, []).append(step)
        return [groups[key] for key in sorted(groups)]

    def targets(self) -> list[TargetInfo]:
        """Every target some running step uses, in name order, once."""
        seen: dict[str, TargetInfo] = {}
        for step in self.steps:
            if step.run:
                for target in step.targets:
                    seen.setdefault(target.id, target)
        return sorted(seen.values(), key=lambda t: t.name)


def plan_deployment(
    steps: Sequence[StepSpec],
    environment: tuple[str, str],
    environment_targets: Sequence[TargetInfo],
    *,
    skip_steps: Sequence[str] = (),
    only_targets: Sequence[str] = (),
    exclude_targets: Sequence[str] = (),
    on_targets: Callable[[StepSpec], bool] = lambda spec: True,
) -> Plan:
    """Plan a deployment to ``environment`` (``(id, name)``); see the module docstring."""
    names = {step.name for step in steps}
    unknown = [name for name in skip_steps if name not in names]
    if unknown:
        raise PlanError(
            "skip_steps names steps the release does not have: " + ", ".join(unknown),
            hint="use the step names of the release's process snapshot",
        )
    required = [s.name for s in steps if s.required and s.name in skip_steps]
    if required:
        raise PlanError(
            "required steps cannot be skipped: " + ", ".join(required),
            hint="remove them from skip_steps",
        )
    for refs, what in ((only_targets, "targets"), (exclude_targets, "exclude_targets")):
        missing = [r for r in refs if not any(t.matches([r]) for t in environment_targets)]
        if missing:
            raise PlanError(
                f"{what} names targets that are not enabled in this environment: "
                + ", ".join(missing),
                hint="name targets of the environment by id or name",
            )
    pool = [
        t
        for t in environment_targets
        if (not only_targets or t.matches(only_targets)) and not t.matches(exclude_targets)
    ]
    plan = Plan()
    group = -1
    for index, spec in enumerate(steps):
        reason = ""
        if spec.disabled:
            reason = "disabled in the process"
        elif spec.environments and not set(spec.environments) & set(environment):
            reason = "not for this environment"
        elif spec.name in skip_steps:
            reason = "skipped on request"
        uses_targets = on_targets(spec)
        chosen: tuple[TargetInfo, ...] = ()
        if uses_targets:
            chosen = tuple(
                sorted(
                    (t for t in pool if not spec.roles or t.roles & set(spec.roles)),
                    key=lambda t: t.name,
                )
            )
        if not reason and (not spec.start_with_previous or group < 0):
            group += 1
        plan.steps.append(
            PlannedStep(index, spec, not reason, reason, uses_targets, chosen, max(group, 0))
        )
    return plan
