"""Built-in step types, one module each, registered like any third-party plugin.

:data:`BUILTIN_MODULES` lists their import paths; the plugin-manager factory imports and
registers each (imports, not entry points, so a frozen build sees them).
"""

from __future__ import annotations

BUILTIN_MODULES: tuple[str, ...] = (
    "octo_appliance.steps.run_script",
    "octo_appliance.steps.manual_intervention",
    "octo_appliance.steps.deploy_package",
)
