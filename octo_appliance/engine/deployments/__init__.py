"""Deployments: the ``deployment`` task kind (see docs/deployments.md, "Execution").

Modules: :mod:`.spec` (inputs), :mod:`.plan` (which steps run where), :mod:`.conditions`,
:mod:`.validate` (checks before anything runs), :mod:`.executor` (the handler),
:mod:`.context` (what a step type is given; per-target retries, timeout, guided failure),
:mod:`.window` (rolling windows), :mod:`.guided_failure`, :mod:`.interruptions`,
:mod:`.progress` (per-step and per-target states in the task), :mod:`.records` (the
deployment row mirrors its task), :mod:`.queueing` (automatic deployments).
"""

from __future__ import annotations

from octo_appliance.engine.deployments.collaborators import DeploymentServices
from octo_appliance.engine.deployments.kind import make_deployment_handler
from octo_appliance.engine.deployments.records import reconcile
from octo_appliance.engine.lifecycles import DEPLOYMENT_TASK_KIND as KIND

__all__ = ["KIND", "DeploymentServices", "make_deployment_handler", "reconcile"]
