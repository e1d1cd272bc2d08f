"""The transport interface, kept at its old import path: it lives in
:mod:`octo_appliance.plugin_api.transports` (the plugin API), which plugins should import."""

from __future__ import annotations

from octo_appliance.plugin_api.transports import (
    NO_OPTIONS,
    AgentLinks,
    CallOptions,
    EventSink,
    RunnerCommand,
    RunnerResult,
    TargetAddress,
    Transport,
)

__all__ = [
    "NO_OPTIONS",
    "AgentLinks",
    "CallOptions",
    "EventSink",
    "RunnerCommand",
    "RunnerResult",
    "TargetAddress",
    "Transport",
]
