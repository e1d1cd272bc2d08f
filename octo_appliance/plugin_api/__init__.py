"""The plugin API: everything a plugin (built-in or third-party) imports, from one place.

``from octo_appliance.plugin_api import hookimpl, StepType, Property, ...``. The loader
(:mod:`octo_appliance.plugins`) builds the plugin manager; this package holds what plugins
build on: the hooks, the registries, the step-type and transport interfaces with what they are
given, property schemas, transport settings and the plugin API version. docs/plugins.md
documents every name in ``__all__`` (a test checks it).
"""

from __future__ import annotations

from octo_appliance.config import Setting
from octo_appliance.plugin_api.hookspecs import PROJECT_NAME, hookimpl, hookspec
from octo_appliance.plugin_api.properties import PROPERTY_TYPES, FieldProblem, Property
from octo_appliance.plugin_api.registry import (
    Registered,
    Registry,
    StepTypeRegistry,
    TransportRegistry,
)
from octo_appliance.plugin_api.settings import appliance_setting, transport_setting
from octo_appliance.plugin_api.steps import (
    InterruptionAnswer,
    OutputValue,
    PackageInfo,
    PackageTransfer,
    RunnerRequest,
    StepContext,
    StepFailed,
    StepInfo,
    StepTarget,
    StepType,
    TargetCode,
    TargetRun,
    property_problems,
)
from octo_appliance.plugin_api.transport_context import TransportContext, TransportVault
from octo_appliance.plugin_api.transports import (
    APPLIANCE_WORKER,
    NO_OPTIONS,
    AgentLinks,
    CallOptions,
    PluginBundle,
    RunnerCommand,
    RunnerResult,
    TargetAddress,
    Transport,
)
from octo_appliance.plugin_api.version import DECLARATION, PLUGIN_API_VERSION

__all__ = [
    "APPLIANCE_WORKER",
    "DECLARATION",
    "NO_OPTIONS",
    "PLUGIN_API_VERSION",
    "PROJECT_NAME",
    "PROPERTY_TYPES",
    "AgentLinks",
    "CallOptions",
    "FieldProblem",
    "InterruptionAnswer",
    "OutputValue",
    "PackageInfo",
    "PackageTransfer",
    "PluginBundle",
    "Property",
    "Registered",
    "Registry",
    "RunnerCommand",
    "RunnerRequest",
    "RunnerResult",
    "Setting",
    "StepContext",
    "StepFailed",
    "StepInfo",
    "StepTarget",
    "StepType",
    "StepTypeRegistry",
    "TargetAddress",
    "TargetCode",
    "TargetRun",
    "Transport",
    "TransportContext",
    "TransportRegistry",
    "TransportVault",
    "appliance_setting",
    "hookimpl",
    "hookspec",
    "property_problems",
    "transport_setting",
]
