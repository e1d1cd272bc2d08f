"""What a transport may use of the appliance: its :class:`TransportContext`.

A transport is built with a context rather than the appliance's concrete parts, so the
appliance can change behind it and a transport cannot reach what it has no business with:
the runner build it sends to targets, its own declared settings (read and checked at start,
:mod:`octo_appliance.plugin_api.settings`), a logger named after it, vault access bound to
its own name (it can open only what it sealed), the agent network only when it declares
itself an agent transport, and the paths code run on the appliance must never be able to
read (for a transport that runs code on the appliance machine, as the built-in worker does).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from octo_appliance.exceptions import PluginError

if TYPE_CHECKING:
    from octo_appliance.plugin_api.transports import AgentLinks
    from octo_appliance.runner_bundle import RunnerBuild


class SealingVault(Protocol):
    """The part of the appliance's vault a transport's context uses."""

    def seal(self, plaintext: str, aad: bytes) -> str: ...

    def open(self, token: str, aad: bytes) -> str: ...


class TransportVault:
    """Seal and open a transport's own credentials (an SSH key, a password).

    Each value is bound to the transport's name and a ``purpose`` the transport chooses (the
    target id and credential kind, say): a value sealed for one purpose or by another
    transport does not open. The sealed text is safe to store anywhere; the plain text must
    never reach a log, an argv or an error message.
    """

    def __init__(self, vault: SealingVault | None, transport: str) -> None:
        self._vault = vault
        self._transport = transport

    def _aad(self, purpose: str) -> bytes:
        return f"transport:{self._transport}:{purpose}".encode()

    def _require(self) -> SealingVault:
        if self._vault is None:
            raise PluginError(
                f"transport {self._transport} used the vault, which this context does not hold",
                hint="build the context with a vault (octo_appliance.testing does)",
            )
        return self._vault

    def seal(self, purpose: str, plaintext: str) -> str:
        return self._require().seal(plaintext, self._aad(purpose))

    def open(self, purpose: str, sealed: str) -> str:
        return self._require().open(sealed, self._aad(purpose))


@dataclass(frozen=True)
class TransportContext:
    """Everything a transport is given (see the module docstring)."""

    #: the transport's registered name
    transport: str
    #: the runner build the appliance serves (what agents run; what others upload)
    runner: RunnerBuild
    #: the transport's declared settings, by name, parsed and checked
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: the appliance's data dir (a transport may keep state in ``transports/<name>/``)
    data_dir: Path = Path(".")
    #: the appliance's vault, reached through :attr:`vault` (bound to this transport)
    sealing: SealingVault | None = None
    #: name -> path of the appliance's secrets (data dir, TLS key, master key) that code run
    #: on the appliance machine must not be able to read
    protected_paths: Mapping[str, Path] = field(default_factory=dict)
    #: the appliance runs inside a test (``octo_appliance.testing``): a transport may skip
    #: what only a real deployment machine allows (the worker runs as the test's own user)
    testing: bool = False
    #: the agent network: given to agent transports only (read it through :attr:`agents`)
    agent_network: AgentLinks | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    @property
    def log(self) -> logging.Logger:
        """``octo_appliance.transport.<name>``: lines go to the appliance's log."""
        return logging.getLogger(f"octo_appliance.transport.{self.transport}")

    @property
    def state_dir(self) -> Path:
        """Where this transport may keep files of its own (created on first use by it)."""
        return self.data_dir / "transports" / self.transport

    @property
    def vault(self) -> TransportVault:
        """Seal and open this transport's own credentials."""
        return TransportVault(self.sealing, self.transport)

    @property
    def agents(self) -> AgentLinks:
        """The agent network; only for transports that declare ``agent_transport = True``."""
        if self.agent_network is None:
            raise PluginError(
                f"transport {self.transport} asked for the agent network, which only agent "
                "transports are given",
                hint="set agent_transport = True on the transport class if it talks to agents",
            )
        return self.agent_network


def agent_context(transport: str, network: AgentLinks, **fields: Any) -> TransportContext:
    """The context of an agent transport over ``network`` (its runner build included; other
    fields as given): for tests and benches that build a transport without an appliance."""
    return TransportContext(transport, network.runner, agent_network=network, **fields)
