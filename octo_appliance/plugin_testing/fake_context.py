"""A :class:`~octo_appliance.plugin_api.StepContext` for unit tests of a step type.

It runs nothing: it records what the step asked (runner requests per target, package
transfers, questions, log lines) and answers from what the test scripted (each target's
outcome, a person's answers, the pinned packages). ``#{...}`` in the properties is substituted
with ``variables`` through the runner's own substitution, so a step sees what the engine
would give it. For the real thing, use the ``octo_running_appliance`` fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from octo_runner.substitution import substitute

from octo_appliance.plugin_api import steps as api

#: how a test scripts one target's outcome: (the target, or None for the appliance, and the
#: request) -> the run; the default succeeds everywhere
Respond = Callable[[api.StepTarget | None, api.RunnerRequest], api.TargetRun]


#: one :meth:`StepContext.interrupt` the step asked
Question = api.InterruptionQuestion


@dataclass(frozen=True)
class LogLine:
    level: str
    message: str
    target: str | None


def succeed(target: api.StepTarget | None, request: api.RunnerRequest) -> api.TargetRun:
    """The default response: the command succeeded (the appliance shows as ``appliance``)."""
    where = target or api.StepTarget("appliance", "appliance")
    return api.TargetRun(where, "success", exit_code=0, attempts=1)


@dataclass
class FakeStepContext(api.StepContext):
    """What a step type's ``execute`` is given, faked (see the module docstring)."""

    step: api.StepInfo
    targets: Sequence[api.StepTarget] = ()
    force: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)
    respond: Respond = succeed
    packages: Mapping[str, api.PackageInfo] = field(default_factory=dict)
    #: answers given, in order, to the questions the step asks
    answers: list[api.InterruptionAnswer] = field(default_factory=list)
    #: what the step asked, for the test's assertions
    requests: list[tuple[api.StepTarget | None, api.RunnerRequest]] = field(default_factory=list)
    transfers: list[tuple[api.PackageInfo, bool]] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    lines: list[LogLine] = field(default_factory=list)

    @classmethod
    def for_step(cls, step_type: str, properties: dict[str, Any], **fields: Any) -> FakeStepContext:
        """A context for a step named after its type with these properties."""
        return cls(api.StepInfo(name=step_type, type=step_type, properties=properties), **fields)

    def properties_for(self, target: api.StepTarget | None) -> dict[str, Any]:
        return {key: self._substituted(value) for key, value in self.step.properties.items()}

    def _substituted(self, value: Any) -> Any:
        if isinstance(value, str):
            return substitute(value, self.variables)
        if isinstance(value, list):
            return [self._substituted(item) for item in value]
        if isinstance(value, dict):
            return {key: self._substituted(item) for key, item in value.items()}
        return value

    async def run_on_targets(
        self, make_request: api.MakeRequest, window: int | None = None
    ) -> list[api.TargetRun]:
        runs = []
        for target in self.targets:
            request = make_request(target)
            self.requests.append((target, request))
            runs.append(self.respond(target, request))
        return runs

    async def run_on_appliance(self, request: api.RunnerRequest) -> api.TargetRun:
        self.requests.append((None, request))
        return self.respond(None, request)

    def package(self, package_id: str) -> api.PackageInfo:
        if package_id not in self.packages:
            raise api.StepFailed(f"the release pinned no version of package {package_id}")
        return self.packages[package_id]

    async def acquire_package(
        self, package: api.PackageInfo, *, appliance: bool = False, wait: bool = True
    ) -> list[api.PackageTransfer]:
        self.transfers.append((package, appliance))
        if not wait:
            return []
        where = [api.StepTarget("appliance", "appliance")] if appliance else list(self.targets)
        return [api.PackageTransfer(target, "full", package.size) for target in where]

    async def ask(self, question: api.InterruptionQuestion) -> api.InterruptionAnswer:
        self.questions.append(question)
        if not self.answers:
            raise AssertionError(
                f"the step asked {question.title!r}; give FakeStepContext answers=[...]"
            )
        return self.answers.pop(0)

    def log(self, level: str, message: str, target: api.StepTarget | None = None) -> None:
        self.lines.append(LogLine(level, message, target.name if target else None))
