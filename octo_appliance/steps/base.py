"""The step-type interface, kept at its old import path: it lives in
:mod:`octo_appliance.plugin_api.steps` (the plugin API), which plugins should import."""

from __future__ import annotations

from octo_appliance.plugin_api.steps import *  # noqa: F403
from octo_appliance.plugin_api.steps import __all__ as __all__
