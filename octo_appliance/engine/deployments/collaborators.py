"""What the deployment task kind is built with (one per appliance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from octo_appliance.config import Config
from octo_appliance.engine.dispatch import Dispatcher
from octo_appliance.engine.tasks.creation import Enqueue
from octo_appliance.plugins import StepTypeRegistry
from octo_appliance.vault import Vault

if TYPE_CHECKING:
    from octo_appliance.engine.acquisition import Acquirer


@dataclass
class DeploymentServices:
    dispatcher: Dispatcher
    step_types: StepTypeRegistry
    vault: Vault
    #: the appliance-wide cap on targets one step runs on at once (the setting; a step's
    #: window may lower it)
    step_parallelism: int = Config.step_parallelism
    #: returns the task engine's ``enqueue`` (for automatic deployments); None: none queued
    enqueue: Enqueue | None = None
    #: seconds between looks at a pending interruption
    poll_interval: float = 0.3
    #: places feed packages in target caches; None: no feed (deploy-package steps fail)
    acquirer: Acquirer | None = None
