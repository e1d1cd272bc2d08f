"""The plugin API: everything a plugin (built-in or third-party) imports, from one place.

``from octo_appliance.plugin_api import hookimpl, StepType, Property, ...``. The loader
(:mod:`octo_appliance.plugins`) builds the plugin manager; this package holds what plugins
build on: the hooks, the registries, the step-type and transport interfaces with what they are
given, property schemas, transport settings and the plugin API version. docs/plugins.md
documents every name in ``__all__`` (a test checks it).
"""

from __future__ import annotations

from octo_appliance.plugin_api import steps, transports
from octo_appliance.plugin_api.hookspecs import PROJECT_NAME, hookimpl, hookspec
from octo_appliance.plugin_api.properties import PROPERTY_TYPES
from octo_appliance.plugin_api.registry import (
    Registered,
    Registry,
    StepTypeRegistry,
    TransportRegistry,
)
from octo_appliance.plugin_api.settings import appliance_setting, transport_setting
from octo_appliance.plugin_api.steps import *  # noqa: F403
from octo_appliance.plugin_api.target_settings import (
    CheckedTargetSettings,
    TargetSettings,
    TargetSettingsInvalid,
)
from octo_appliance.plugin_api.transport_context import (
    SealingVault,
    TransportContext,
    TransportVault,
)
from octo_appliance.plugin_api.transports import *  # noqa: F403
from octo_appliance.plugin_api.version import DECLARATION, PLUGIN_API_VERSION
from octo_appliance.setting import Setting

__all__ = [
    *steps.__all__,
    *transports.__all__,
    "CheckedTargetSettings",
    "DECLARATION",
    "PLUGIN_API_VERSION",
    "PROJECT_NAME",
    "PROPERTY_TYPES",
    "Registered",
    "Registry",
    "SealingVault",
    "Setting",
    "StepTypeRegistry",
    "TargetSettings",
    "TargetSettingsInvalid",
    "TransportContext",
    "TransportRegistry",
    "TransportVault",
    "appliance_setting",
    "hookimpl",
    "hookspec",
    "transport_setting",
]
