"""Built-in transports, one module each, registered like any third-party plugin.

:data:`BUILTIN_MODULES` lists their import paths; the plugin-manager factory imports and
registers each.
"""

from __future__ import annotations

BUILTIN_MODULES: tuple[str, ...] = (
    "octo_appliance.transports.listening",
    "octo_appliance.transports.polling",
    "octo_appliance.transports.local",
    "octo_appliance.transports.ssh",
)
