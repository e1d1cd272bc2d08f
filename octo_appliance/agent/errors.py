"""The agent's exception subtree, under the project's one root.

::

    OctoError
    ├── ConfigError                 (octo_appliance.exceptions) bad flags or a broken agent.json
    └── AgentError                  anything the agent itself refuses or cannot do
        ├── ForkServerGone          (agent/forkserver) the runner fork server ended
        └── RegistrationError       register/deregister failed: nothing was changed locally

Messages never carry the API key, variable values or script output.
"""

from __future__ import annotations

from octo_appliance.exceptions import OctoError


class AgentError(OctoError):
    """The agent cannot do what was asked (missing identity, bind failure, bad home)."""


class RegistrationError(AgentError):
    """Registering with (or deregistering from) the appliance failed."""
