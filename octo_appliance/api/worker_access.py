"""Who may run code on the appliance machine: the ``worker.use`` checks shared by the API.

A step with ``run_on: appliance`` runs on the built-in worker, on the appliance's own machine.
That is an administrator's decision, not a project's: saving a process that holds such a
step, creating a release of it and deploying that release each need ``worker.use`` (held by
``administrator``, or granted through the ``worker-user`` role) besides their usual
permission. Deploying checks the deployer, not whoever saved the process: a process an
administrator saved is still refused to a deployer without ``worker.use``. The script console
aimed at a target of communication style ``local`` is checked the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from octo_appliance.api.context import RequestContext
from octo_appliance.exceptions import Forbidden
from octo_appliance.plugins import StepTypeRegistry
from octo_appliance.security.permissions import Permission

log = logging.getLogger(__name__)

#: step names listed in a refusal (the rest are counted)
NAMES_SHOWN = 5


def appliance_steps(steps: Iterable[dict[str, Any]], registry: StepTypeRegistry) -> list[str]:
    """Names of the stored steps (process or release snapshot) that run on the appliance.

    A step type that is no longer registered cannot run at all, so it is not counted; one
    whose check raises counts as running on the appliance (refuse rather than guess)."""
    names = []
    for step in steps:
        kind = step.get("type")
        if not isinstance(kind, str) or kind not in registry:
            continue
        try:
            on_appliance = registry.get(kind)().runs_on_appliance(
                dict(step.get("properties") or {})
            )
        except Exception:  # a plugin's bug: refuse rather than let it reach the worker
            log.exception("step type %s failed to say where it runs", kind)
            on_appliance = True
        if on_appliance:
            names.append(str(step.get("name", "")))
    return names


def require_worker_use(
    ctx: RequestContext,
    step_names: list[str],
    what: str,
    *,
    project: str | None = None,
    environment: str | None = None,
) -> None:
    """403 naming ``worker.use`` unless the caller holds it (nothing to check without steps)."""
    if not step_names or ctx.user.can(
        Permission.WORKER_USE, project=project, environment=environment
    ):
        return
    shown = ", ".join(f"'{name}'" for name in step_names[:NAMES_SHOWN])
    if len(step_names) > NAMES_SHOWN:
        shown += f" and {len(step_names) - NAMES_SHOWN} more"
    raise Forbidden(
        f"you lack the permission '{Permission.WORKER_USE}' needed to {what}: step(s) {shown} "
        "run on the appliance's built-in worker",
        hint="ask an administrator to grant your team the worker-user role, or run these "
        "steps on targets (run_on: targets)",
    )


def require_worker_use_for_console(ctx: RequestContext, styles: Iterable[str]) -> None:
    """The script console aimed at the built-in worker (a target of style ``local``)."""
    if "local" in set(styles) and not ctx.user.can_unscoped(Permission.WORKER_USE):
        raise Forbidden(
            f"you lack the permission '{Permission.WORKER_USE}' without scope limits: the "
            "script would run on the appliance's built-in worker",
            hint="ask an administrator to run it, or choose agent targets",
        )


__all__ = ["appliance_steps", "require_worker_use", "require_worker_use_for_console"]
