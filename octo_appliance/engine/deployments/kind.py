"""The ``deployment`` task kind: run a release's process in one environment.

Order of work (a deployment scheduled ahead is only claimed once its ``not_before`` time has
come: it waits ``queued``, see the task store): load the release snapshot (sensitive values opened
and masked from then on) and the environment's targets; plan; validate every step for every
target (nothing runs if anything is wrong); run the step groups one after another, each step
on its targets within its rolling window; record states; mirror the outcome onto the
deployment row; after a success, queue the lifecycle's automatic deployments.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from octo_appliance.db.tasks import CANCELED, FAILED, SUCCESS, TIMED_OUT
from octo_appliance.engine.deployments import interruptions, queueing, records, validate
from octo_appliance.engine.deployments.collaborators import DeploymentServices
from octo_appliance.engine.deployments.conditions import VARIABLE, parse_condition, should_run
from octo_appliance.engine.deployments.context import EngineStepContext
from octo_appliance.engine.deployments.loading import Loaded, load
from octo_appliance.engine.deployments.plan import PlanError, PlannedStep, plan_deployment
from octo_appliance.engine.deployments.progress import Progress
from octo_appliance.engine.deployments.run import DeploymentRun
from octo_appliance.engine.deployments.spec import DeploymentOptions, SpecError, StepSpec
from octo_appliance.engine.deployments.window import run_all
from octo_appliance.engine.tasks import RunningTask, TaskFailed, TaskHandler
from octo_appliance.engine.tasks.outage import until_stored
from octo_appliance.engine.variables import VariableProblem, substitute_text
from octo_appliance.steps.base import StepFailed, StepType

log = logging.getLogger("octo_appliance.engine")


def make_deployment_handler(services: DeploymentServices) -> TaskHandler:
    async def handle(task: RunningTask) -> None:
        try:
            options = DeploymentOptions.from_arguments(task.arguments)
        except SpecError as exc:
            raise TaskFailed(exc.message) from None
        state = FAILED
        try:
            await _run(task, services, options)
            state = SUCCESS
        except asyncio.CancelledError:
            state = {"canceled": CANCELED, "timed_out": TIMED_OUT}.get(
                task.stop_reason or "", FAILED
            )
            raise
        finally:
            await asyncio.shield(_close(task, options.deployment_id, state))
        await _promote(task, services, options)

    return handle


def _not_stopping(task: RunningTask) -> bool:
    return task.stop_reason != "shutdown"


async def _close(task: RunningTask, deployment_id: str, state: str) -> None:
    """Mirror the end onto the deployment row (each write is safe to repeat)."""
    keep_trying = functools.partial(_not_stopping, task)
    what = f"the end of deployment {deployment_id}"
    try:
        await until_stored(
            functools.partial(records.mark_finished, deployment_id, state),
            keep_trying=keep_trying,
            what=what,
        )
        await until_stored(
            functools.partial(
                interruptions.close_pending,
                [task.id],
                "the deployment ended before anyone answered",
            ),
            keep_trying=keep_trying,
            what=what,
        )
        await until_stored(records.reconcile, keep_trying=keep_trying, what=what)
    except Exception as exc:  # the next start reconciles
        log.error("deployment %s: recording its end failed: %s", deployment_id, exc)


async def _run(task: RunningTask, services: DeploymentServices, options: DeploymentOptions) -> None:
    if options.not_before is not None:
        task.info(f"Scheduled for {options.not_before.isoformat()}Z; starting.")
    await asyncio.to_thread(records.mark_executing, options.deployment_id)
    try:
        loaded = await asyncio.to_thread(load, services.vault, options)
    except SpecError as exc:
        raise TaskFailed(exc.message, hint=exc.hint) from None
    task.add_sensitive_values(v.value for v in loaded.variables if v.sensitive)
    step_types = _step_types(services, loaded.steps)
    try:
        plan = plan_deployment(
            loaded.steps,
            loaded.environment,
            loaded.targets,
            skip_steps=options.skip_steps,
            only_targets=options.targets,
            exclude_targets=options.exclude_targets,
            on_targets=lambda spec: _on_targets(step_types, spec),
        )
    except PlanError as exc:
        raise TaskFailed(exc.message, hint=exc.hint) from None
    progress = Progress(task, plan, options.deployment_id)
    run = DeploymentRun(task, services, options, loaded, plan, progress, step_types)
    _log_plan(task, loaded, run)
    found = validate.problems(run)
    if found:
        await progress.finish(final=True)
        raise TaskFailed(
            f"the deployment was not started, {len(found)} problem(s): {validate.describe(found)}"
        )
    try:
        for group in plan.groups():
            failed_before = run.failed
            await run_all(_run_step(run, planned, failed_before) for planned in group)
    except asyncio.CancelledError:
        _close_steps(progress, "canceled")
        await asyncio.shield(progress.finish(final=False))
        raise
    except BaseException:
        _close_steps(progress, "failed")
        await asyncio.shield(progress.finish(final=True))
        raise
    await progress.finish(final=True)
    if run.failed:
        raise TaskFailed(run.error_text())
    task.info(f"Deployed release {loaded.release[1]} to {loaded.environment[1]}.")


def _step_types(services: DeploymentServices, steps: list[StepSpec]) -> dict[str, StepType]:
    found = {}
    for spec in steps:
        if spec.type in services.step_types and spec.type not in found:
            found[spec.type] = services.step_types.get(spec.type)()
    return found


def _on_targets(step_types: dict[str, StepType], spec: StepSpec) -> bool:
    step_type = step_types.get(spec.type)
    return step_type is not None and step_type.targets_machines(dict(spec.properties))


def _log_plan(task: RunningTask, loaded: Loaded, run: DeploymentRun) -> None:
    task.info(
        f"Deploying {loaded.project[1]} release {loaded.release[1]} to {loaded.environment[1]}"
        f" (deployment {loaded.deployment_id})."
    )
    for planned in run.plan.steps:
        spec = planned.spec
        if not planned.run:
            task.log("verbose", f"Step '{spec.name}': {planned.reason}.")
        elif planned.on_targets:
            names = ", ".join(t.name for t in planned.targets) or "no target"
            task.log("verbose", f"Step '{spec.name}' ({spec.type}) on {names}.")
        else:
            task.log("verbose", f"Step '{spec.name}' ({spec.type}) on the appliance.")


def _close_steps(progress: Progress, state: str) -> None:
    """Mark what was still running or waiting when the deployment ended early."""
    for index, entry in enumerate(progress.steps):
        if entry["state"] == "executing":
            progress.step_finished(index, state, "the deployment ended while this step ran")
        elif entry["state"] == "pending":
            progress.step_skipped(index, "the deployment ended before this step")
        for target in entry["targets"]:
            if target["state"] in ("pending", "executing"):
                target["state"] = "canceled"


async def _run_step(run: DeploymentRun, planned: PlannedStep, failed_before: bool) -> None:
    spec, task, progress = planned.spec, run.task, run.progress
    condition = parse_condition(spec.condition, spec.name)
    value = ""
    if condition.kind == VARIABLE:
        try:
            value = substitute_text(condition.expression, run.variables(planned, None).mapping())
        except VariableProblem as exc:
            message = f"run condition: {exc.message}"
            progress.step_started(planned.index)
            progress.step_finished(planned.index, FAILED, message)
            run.failures.append((spec.name, message))
            task.error(f"Step '{spec.name}' failed: {message}")
            return
    if not should_run(condition, failed_before, value):
        reason = f"its condition is not met (runs {condition.describe()})"
        progress.step_skipped(planned.index, reason)
        task.info(f"Step '{spec.name}' skipped: {reason}.")
        return
    step_type = run.step_types[spec.type]
    ctx = EngineStepContext(run, planned)
    if planned.on_targets and not ctx.targets:
        reason = "no target in this deployment has its roles" + (
            f" ({', '.join(spec.roles)})" if spec.roles else ""
        )
        progress.step_skipped(planned.index, reason)
        task.warning(f"Step '{spec.name}' skipped: {reason}.")
        return
    progress.step_started(planned.index)
    task.log("highlight", f"Step '{spec.name}' ({spec.type}) started.")
    message = ""
    try:
        try:
            await step_type.execute(ctx)
        finally:
            await ctx.close()
        if ctx.failed_targets:
            message = "failed on " + ", ".join(ctx.failed_targets)
    except StepFailed as exc:
        message = exc.message
    except (TaskFailed, asyncio.CancelledError):
        raise
    except Exception as exc:  # a step type's bug fails the step, not the engine
        log.exception("step type %s raised", spec.type)
        message = f"step type '{spec.type}' raised {type(exc).__name__}: {exc}"
    if message:
        progress.step_finished(planned.index, FAILED, message)
        run.failures.append((spec.name, message))
        task.error(f"Step '{spec.name}' failed: {message}")
    else:
        progress.step_finished(planned.index, SUCCESS)
        task.info(f"Step '{spec.name}' succeeded.")


async def _promote(
    task: RunningTask, services: DeploymentServices, options: DeploymentOptions
) -> None:
    """After a success: the lifecycle's automatic deployments (a failure here is logged).
    Repeating it after a lost connection is safe: environments that already have a deployment
    of the release are left out."""
    if services.enqueue is None:
        return
    enqueue = services.enqueue
    try:
        queued = await until_stored(
            functools.partial(
                queueing.promote, enqueue, options.release_id, options.environment_id
            ),
            keep_trying=functools.partial(_not_stopping, task),
            what=f"the automatic deployments after {options.deployment_id}",
        )
        for deployment_id, task_id in queued:
            task.info(
                f"The lifecycle deploys this release onward automatically: deployment "
                f"{deployment_id} (task {task_id})."
            )
    except Exception as exc:
        log.exception("queueing automatic deployments after %s failed", options.deployment_id)
        task.warning(f"Could not queue the lifecycle's automatic deployments: {exc}")
