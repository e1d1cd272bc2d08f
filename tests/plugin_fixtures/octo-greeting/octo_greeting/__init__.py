"""Test plugin: the ``greeting`` step type (see tests/plugin_fixtures/README.md)."""

from __future__ import annotations

from octo_appliance.hookspecs import hookimpl
from octo_greeting.step import Greeting

__version__ = "1.0.0"


@hookimpl
def register_step_types(registry):  # type: ignore[no-untyped-def]
    registry.add(Greeting)
