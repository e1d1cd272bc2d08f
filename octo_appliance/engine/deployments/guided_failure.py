"""Guided failure: when a step fails on a target, ask a person what to do instead of failing.

Asked only when the deployment was created with ``guided_failure: true``, after the step's
own automatic retries are used up. The answers:

- ``retry``: run the step on that target again (once; if it fails again, ask again);
- ``skip``: count the step as skipped on that target and go on;
- ``exclude-target``: drop the target from the rest of the deployment and go on;
- ``abort``: fail the deployment now (other targets of the step are stopped).
"""

from __future__ import annotations

from octo_appliance.engine.deployments.interruptions import Question

KIND = "guided-failure"
RETRY, SKIP, EXCLUDE, ABORT = "retry", "skip", "exclude-target", "abort"
OPTIONS: tuple[str, ...] = (RETRY, SKIP, EXCLUDE, ABORT)


def question(
    *,
    task_id: str,
    deployment_id: str,
    step: str,
    target: tuple[str, str],
    failure: str,
    environment_id: str,
    project_id: str,
) -> Question:
    target_id, target_name = target
    instructions = (
        f"Step '{step}' failed on {target_name}: {failure}\n\n"
        "retry: run the step on this target again; skip: treat the step as skipped on this "
        "target and continue; exclude-target: leave this target out of the rest of the "
        "deployment and continue; abort: fail the deployment."
    )
    return Question(
        task_id=task_id,
        deployment_id=deployment_id,
        kind=KIND,
        title=f"Step '{step}' failed on {target_name}",
        instructions=instructions,
        step_name=step,
        options=OPTIONS,
        target_id=target_id,
        target_name=target_name,
        environment_id=environment_id,
        project_id=project_id,
    )
