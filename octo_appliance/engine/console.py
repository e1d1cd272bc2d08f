"""The script console: an ad-hoc script run on every chosen target at once, or ``window``
at a time (task kind ``script``).

Arguments (stored with the task): ``syntax``, ``body``, ``target_ids``, the non-sensitive
``variables`` and ``window`` (most targets at once, a rolling window; absent: all at once);
the sensitive variables travel sealed in the task's sensitive arguments and reach the runner
only through its stdin.
"""

from __future__ import annotations

import asyncio
from typing import Any

from octo_appliance.engine.dispatch import Dispatcher
from octo_appliance.engine.targets import load_addresses
from octo_appliance.engine.tasks import RunningTask, TaskFailed, TaskHandler
from octo_appliance.transports.base import RunnerCommand, TargetAddress

KIND = "script"


def system_variables(task: RunningTask, target: TargetAddress) -> dict[str, str]:
    """The ``Octo.*`` names scripts can read, and the same under ``Octopus.*``."""
    values = {
        "Task.Id": task.id,
        "Machine.Name": target.name,
        "Machine.Id": target.id,
    }
    if task.environment_id:
        values["Environment.Id"] = task.environment_id
    if "environment_name" in task.arguments:
        values["Environment.Name"] = str(task.arguments["environment_name"])
    names: dict[str, str] = {}
    for key, value in values.items():
        names[f"Octo.{key}"] = value
        names[f"Octopus.{key}"] = value
    return names


def variable_list(
    plain: dict[str, Any], sensitive: dict[str, Any], system: dict[str, str]
) -> list[dict[str, Any]]:
    variables = [{"name": k, "value": v, "sensitive": False} for k, v in system.items()]
    variables += [{"name": k, "value": str(v), "sensitive": False} for k, v in plain.items()]
    variables += [{"name": k, "value": str(v), "sensitive": True} for k, v in sensitive.items()]
    return variables


def make_script_handler(dispatcher: Dispatcher) -> TaskHandler:
    async def run(task: RunningTask) -> None:
        args = task.arguments
        plain = dict(args.get("variables") or {})
        sensitive = dict(task.sensitive_arguments.get("variables") or {})
        task.add_sensitive_values(str(v) for v in sensitive.values())
        targets = await asyncio.to_thread(load_addresses, args.get("target_ids") or [])
        if not targets:
            raise TaskFailed("no target to run on: they were deleted after the task was queued")
        names = ", ".join(t.name for t in targets)
        task.info(f"running a {args['syntax']} script on {len(targets)} target(s): {names}")

        def command(target: TargetAddress) -> RunnerCommand:
            return RunnerCommand(
                task_id=task.id,
                command="run-script",
                arguments={"syntax": args["syntax"], "body": args["body"]},
                variables=variable_list(plain, sensitive, system_variables(task, target)),
                context={"task_id": task.id, "target": target.name},
            )

        window = args.get("window")
        if window:
            task.info(f"at most {window} target(s) at once")
        outcomes = await dispatcher.run_on_targets(task, targets, command, parallelism=window)
        failed = [o.target.name for o in outcomes if not o.success]
        if failed:
            raise TaskFailed(
                f"the script failed on {len(failed)} of {len(outcomes)} target(s): "
                + ", ".join(failed)
            )
        task.info(f"the script succeeded on all {len(outcomes)} target(s)")

    return run
