"""The hooks, kept at their old import path: they live in
:mod:`octo_appliance.plugin_api.hookspecs`, which plugins should import."""

from __future__ import annotations

from octo_appliance.plugin_api.hookspecs import PROJECT_NAME, hookimpl, hookspec

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]
