"""Test plugin: the ``greeting`` step type (see tests/plugin_fixtures/README.md)."""

from __future__ import annotations

from octo_appliance.plugin_api import hookimpl
from octo_greeting.step import Greeting

__version__ = "1.0.0"
#: the plugin API version this plugin was written for
OCTO_PLUGIN_API = 2


@hookimpl
def register_step_types(registry):  # type: ignore[no-untyped-def]
    registry.add(Greeting)
