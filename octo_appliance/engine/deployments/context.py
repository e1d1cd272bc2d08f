"""The engine's :class:`~octo_appliance.steps.base.StepContext`: what a step type is given.

Each target of a step goes through :meth:`EngineStepContext._target_flow`: attempts with the
step's timeout, automatic retries, then (when the deployment asked for it) guided failure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from octo_appliance.engine.deployments import guided_failure, interruptions
from octo_appliance.engine.deployments.interruptions import Question
from octo_appliance.engine.deployments.plan import PlannedStep, TargetInfo
from octo_appliance.engine.deployments.run import DeploymentRun
from octo_appliance.engine.deployments.step_packages import StepPackages, step_target
from octo_appliance.engine.deployments.window import effective_window, rolling
from octo_appliance.engine.tasks import OutputVariable, TargetRef, TaskFailed
from octo_appliance.engine.variables import Resolved, VariableProblem, substitute_properties
from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_api.transports import APPLIANCE_WORKER as WORKER
from octo_appliance.plugin_api.transports import PluginBundle
from octo_appliance.steps.base import (
    InterruptionAnswer,
    InterruptionQuestion,
    MakeRequest,
    OutputValue,
    PackageInfo,
    PackageTransfer,
    RunnerRequest,
    StepContext,
    StepFailed,
    StepInfo,
    StepTarget,
    TargetRun,
)
from octo_appliance.transports.base import RunnerCommand, TargetAddress

Attempt = tuple[str, int | None, str, list[OutputValue]]


class _Quiet:
    """A dispatcher recorder that records nothing: the flow records per step and target."""

    async def pending(self, target: TargetAddress) -> None:
        return None

    async def executing(self, target: TargetAddress) -> None:
        return None

    async def finished(self, target: TargetAddress, state: str, **fields: Any) -> None:
        return None


class EngineStepContext(StepContext):
    def __init__(self, run: DeploymentRun, planned: PlannedStep) -> None:
        self.run = run
        self.planned = planned
        spec = planned.spec
        self.step = StepInfo(
            name=spec.name,
            type=spec.type,
            roles=spec.roles,
            properties=spec.properties,
            window=spec.window,
            retries=spec.retries,
            timeout=spec.timeout,
        )
        self._infos = {t.id: t for t in run.active_targets(planned)}
        self.targets = [step_target(t) for t in self._infos.values()]
        #: targets that ended failed (after retries and guided failure), for the engine
        self.failed_targets: list[str] = []
        self.force = run.options.force
        #: the step's package transfers (engine/deployments/step_packages.py)
        self.packages = StepPackages(run, planned.index)

    # -- StepContext ---------------------------------------------------------------------

    def properties_for(self, target: StepTarget | None) -> dict[str, Any]:
        info = None if target is None else self._infos.get(target.id)
        variables = self.run.variables(self.planned, info, keep=True).mapping()
        step_type = self.run.step_types.get(self.step.type)
        keep = step_type.runner_substituted if step_type is not None else ()
        try:
            values: dict[str, Any] = substitute_properties(
                self.step.properties, variables, keep=keep
            )
        except VariableProblem as exc:
            where = "on the appliance" if target is None else f"on {target.name}"
            raise StepFailed(f"{where}: {exc.message}", hint=exc.hint) from None
        return values

    async def run_on_targets(
        self, make_request: MakeRequest, window: int | None = None
    ) -> list[TargetRun]:
        infos = [t for t in self._infos.values() if t.id not in self.run.excluded]
        for info in infos:
            self.run.progress.target_pending(self.planned.index, info.id, info.name)
        limit = effective_window(window or self.step.window, self.run.services.step_parallelism)
        return await rolling(infos, limit, lambda info: self._target_flow(info, make_request))

    async def run_on_appliance(self, request: RunnerRequest) -> TargetRun:
        step_type = self.run.step_types.get(self.step.type)
        if step_type is None or not step_type.runs_on_appliance(dict(self.step.properties)):
            # worker.use was checked for the steps that say they run on the appliance; a step
            # type that does not say so must not reach the built-in worker unchecked
            raise StepFailed(
                f"step type '{self.step.type}' ran on the appliance without declaring it "
                "(runs_on_appliance): refused",
                hint="update the plugin that provides this step type",
            )
        info = TargetInfo(WORKER.id, WORKER.name, address=WORKER)
        self.run.progress.target_pending(self.planned.index, info.id, info.name)
        return await self._target_flow(info, lambda _t: request, appliance=True)

    def package(self, package_id: str) -> PackageInfo:
        found = self.run.loaded.packages.get((self.step.name, package_id))
        if found is None:
            raise StepFailed(self.run.loaded.package_problem(self.step.name, package_id))
        return found

    async def acquire_package(
        self, package: PackageInfo, *, appliance: bool = False, wait: bool = True
    ) -> list[PackageTransfer]:
        if appliance:
            infos = [TargetInfo(WORKER.id, WORKER.name, address=WORKER)]
        else:
            infos = [
                t
                for t in self._infos.values()
                if t.id not in self.run.excluded and t.address is not None and not t.unavailable
            ]
        return await self.packages.acquire(package, infos, wait=wait)

    async def close(self) -> None:
        """Stop transfers nobody will wait for any more (the step ended or was cancelled)."""
        await self.packages.close()

    async def ask(self, question: InterruptionQuestion) -> InterruptionAnswer:
        loaded, target = self.run.loaded, question.target
        return await self._ask(
            Question(
                task_id=self.run.task.id,
                deployment_id=loaded.deployment_id,
                kind=question.kind,
                title=question.title,
                instructions=question.instructions,
                step_name=self.step.name,
                options=question.options,
                teams=question.teams,
                target_id=None if target is None else target.id,
                target_name="" if target is None else target.name,
                environment_id=loaded.environment[0],
                project_id=loaded.project[0],
            )
        )

    def log(self, level: str, message: str, target: StepTarget | None = None) -> None:
        self.run.task.log(
            level, message, None if target is None else TargetRef(target.id, target.name)
        )

    # -- interruptions -------------------------------------------------------------------

    async def _ask(self, question: Question) -> InterruptionAnswer:
        ref = TargetRef(question.target_id, question.target_name) if question.target_id else None
        interruption_id = await asyncio.to_thread(interruptions.create, question)
        steps = self.run.progress.steps[self.planned.index]
        steps["interruption_id"] = interruption_id
        self.run.progress.changed()
        self.run.task.log(
            "warning",
            f"Waiting for a decision ({question.kind}): {question.title}. Answer interruption "
            f"{interruption_id} with one of: {', '.join(question.options)}.",
            ref,
        )
        answer = await interruptions.wait_for_answer(
            interruption_id, self.run.services.poll_interval
        )
        steps.pop("interruption_id", None)
        if answer.result not in question.options:
            raise TaskFailed(
                f"interruption {interruption_id} was answered '{answer.result}', which is not one "
                f"of {', '.join(question.options)}"
            )
        notes = f" ({answer.notes})" if answer.notes else ""
        who = answer.submitted_by or "someone"
        self.run.task.log("info", f"{who} answered '{answer.result}'{notes}.", ref)
        return answer

    # -- one target ----------------------------------------------------------------------

    async def _target_flow(
        self, info: TargetInfo, make_request: MakeRequest, appliance: bool = False
    ) -> TargetRun:
        run, index = self.run, self.planned.index
        target = step_target(info)
        ref = TargetRef(info.id, info.name)
        retries_left = self.step.retries
        unavailable = info.unavailable
        attempts = 0
        while True:
            attempts += 1
            run.progress.target_started(index, info.id)
            state, exit_code, message, outputs = await self._attempt(
                info, target, make_request, appliance, unavailable
            )
            unavailable = False
            if state == "success":
                self._keep_outputs(info, outputs)
                run.progress.target_finished(
                    index, info.id, "success", exit_code=exit_code, message=message
                )
                return TargetRun(target, "success", exit_code, message, tuple(outputs), attempts)
            if retries_left > 0:
                retries_left -= 1
                run.task.warning(
                    f"{info.name}: attempt {attempts} failed ({message}); retrying", ref
                )
                continue
            if not run.options.guided_failure:
                break
            run.progress.target_finished(
                index,
                info.id,
                state,
                exit_code=exit_code,
                message=f"{message} (waiting for a decision)",
            )
            answer = await self._ask(
                guided_failure.question(
                    task_id=run.task.id,
                    deployment_id=run.loaded.deployment_id,
                    step=self.step.name,
                    target=(info.id, info.name),
                    failure=message,
                    environment_id=run.loaded.environment[0],
                    project_id=run.loaded.project[0],
                )
            )
            who = answer.submitted_by or "someone"
            if answer.result == guided_failure.RETRY:
                continue
            if answer.result == guided_failure.SKIP:
                note = f"skipped by {who} after: {message}"
                run.progress.target_finished(
                    index, info.id, "skipped", exit_code=exit_code, message=note
                )
                return TargetRun(target, "skipped", exit_code, note, (), attempts)
            if answer.result == guided_failure.EXCLUDE:
                run.excluded.add(info.id)
                note = f"excluded from the deployment by {who} after: {message}"
                run.progress.target_finished(
                    index, info.id, "excluded", exit_code=exit_code, message=note
                )
                return TargetRun(target, "excluded", exit_code, note, (), attempts)
            run.progress.target_finished(
                index, info.id, state, exit_code=exit_code, message=message
            )
            raise TaskFailed(
                f"aborted by {who} after step '{self.step.name}' failed on {info.name}: {message}"
            )
        run.progress.target_finished(index, info.id, state, exit_code=exit_code, message=message)
        self.failed_targets.append(info.name)
        return TargetRun(target, "failed", exit_code, message, (), attempts)

    async def _attempt(
        self,
        info: TargetInfo,
        target: StepTarget,
        make_request: MakeRequest,
        appliance: bool,
        unavailable: bool,
    ) -> Attempt:
        task = self.run.task
        ref = TargetRef(info.id, info.name)
        if unavailable or info.address is None:
            message = (
                f"{info.name} was {info.health_status} at its last health check; fix the agent "
                "and run a health check"
            )
            task.error(message, ref)
            return "failed", None, message, []
        try:
            request = make_request(target)
        except StepFailed as exc:
            task.error(exc.message, ref)
            return "failed", None, exc.message, []
        if request.package is not None:
            problem = await self.packages.place(request.package, info)
            if problem is not None:
                return "failed", None, problem, []
        try:
            plugin = await self._bundle_for(request.command)
        except (StepFailed, PluginError) as exc:
            task.error(exc.message, ref)
            return "failed", None, exc.message, []
        variables = self.run.variables(self.planned, None if appliance else info)
        command = RunnerCommand(
            task_id=task.id,
            command=request.command,
            arguments=request.arguments,
            variables=variables.runner_list(),
            context={
                "task_id": task.id,
                "target": info.name,
                "step": self.step.name,
                "deployment_id": self.run.loaded.deployment_id,
            },
            exclusive=request.exclusive,
            plugin=plugin,
        )
        timeout = self.step.timeout
        try:
            async with asyncio.timeout(timeout):
                outcome = await self.run.services.dispatcher.run_target(
                    task, info.address, command, _Quiet()
                )
        except TimeoutError:
            message = f"timed out after {timeout} s (the step's timeout); the run was stopped"
            task.error(f"{info.name}: {message}", ref)
            return "timed_out", None, message, []
        if outcome.result is None:
            return "failed", None, outcome.error or "the target could not be reached", []
        result = outcome.result
        outputs = [
            OutputValue(str(v.get("name", "")), str(v.get("value", "")), bool(v.get("sensitive")))
            for v in result.output_variables
        ]
        return (
            ("success" if result.success else "failed"),
            result.exit_code,
            result.message,
            outputs,
        )

    async def _bundle_for(self, command: str) -> PluginBundle | None:
        """The bundle of the step type's target-side code when ``command`` is one of its
        commands (built once per appliance process); None for a built-in command."""
        step_type = self.run.step_types.get(self.step.type)
        code = step_type.target_code if step_type is not None else None
        if code is None or command not in code.commands:
            return None
        store = self.run.services.bundles
        if store is None:
            raise StepFailed(
                f"step type '{self.step.type}' ships runner command {command!r}, and this "
                "appliance was started without a plugin bundle store",
                hint="start the appliance with octo-appliance serve",
            )
        return await asyncio.to_thread(store.bundle_for, self.step.type, code)

    def _keep_outputs(self, info: TargetInfo, outputs: list[OutputValue]) -> None:
        self.run.outputs.record(
            self.step.name, info.name, [Resolved(v.name, v.value, v.sensitive) for v in outputs]
        )
        self.run.progress.target_outputs(
            info.id, self.step.name, [OutputVariable(v.name, v.value, v.sensitive) for v in outputs]
        )
