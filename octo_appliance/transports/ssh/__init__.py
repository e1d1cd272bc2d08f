"""SSH targets without an agent: the ``ssh`` transport, registered like any plugin.

The modules: :mod:`.settings` (a target's address, pinned host key and credentials),
:mod:`.pool` (one connection per target, host-key pinning), :mod:`.remote` (the directory,
SFTP uploads and the runner process on the target), :mod:`.transport` (the transport the
engine calls). docs/ssh-targets.md is the operator's side.
"""

from __future__ import annotations

from octo_appliance.plugin_api import PLUGIN_API_VERSION, TransportRegistry, hookimpl
from octo_appliance.transports.ssh.transport import SshTransport

OCTO_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(SshTransport)


__all__ = ["SshTransport"]
