"""The plugin API's version, and the check that refuses a plugin written for another one.

A plugin declares the version it was written for with a module-level (or attribute-level, for
a plugin object) integer ``OCTO_PLUGIN_API = 2``. The version is one whole number that grows
when the plugin-facing surface changes in a way an old plugin would trip over (version 2: the
transport context replaced the agent network as a transport's constructor argument, step types
declare property schemas). A plugin that declares none was written for version 1, before
plugins declared a version. The check runs when the plugin manager is built, so an
incompatible plugin stops the start (or, with the loader's report-and-skip, is skipped) with
a message naming both versions, never a confusing ``TypeError`` in the middle of a deployment.
"""

from __future__ import annotations

from octo_appliance.exceptions import PluginError

#: the version of the plugin API this appliance provides
PLUGIN_API_VERSION = 2
#: the versions whose plugins this appliance loads
SUPPORTED_PLUGIN_API_VERSIONS: frozenset[int] = frozenset({PLUGIN_API_VERSION})
#: the attribute a plugin (module or object) declares its version in
DECLARATION = "OCTO_PLUGIN_API"
#: what a plugin that declares nothing was written for
UNDECLARED_VERSION = 1


def declared_version(plugin: object) -> int:
    """The plugin API version ``plugin`` says it was written for (1 when it says none)."""
    declared = getattr(plugin, DECLARATION, UNDECLARED_VERSION)
    if isinstance(declared, bool) or not isinstance(declared, int):
        raise PluginError(
            f"{DECLARATION} = {declared!r} is not a whole number",
            hint=f"write {DECLARATION} = {PLUGIN_API_VERSION} in the plugin (docs/plugins.md)",
        )
    return declared


def check_api_version(name: str, plugin: object) -> None:
    """Raise :class:`PluginError` when ``plugin`` was written for a version this appliance
    does not load; the message names both versions."""
    try:
        declared = declared_version(plugin)
    except PluginError as exc:
        raise PluginError(f"plugin {name}: {exc.message}", hint=exc.hint) from None
    if declared in SUPPORTED_PLUGIN_API_VERSIONS:
        return
    said = "" if hasattr(plugin, DECLARATION) else " (it declares no version)"
    raise PluginError(
        f"plugin {name} was written for plugin API version {declared}{said}; this appliance "
        f"provides plugin API version {PLUGIN_API_VERSION}",
        hint=(
            "install a release of the plugin written for version "
            f"{PLUGIN_API_VERSION} (docs/plugins.md, 'Plugin API version'), or remove it"
        ),
    )
