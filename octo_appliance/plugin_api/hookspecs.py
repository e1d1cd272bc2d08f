"""The hooks a plugin may implement (pluggy project ``octo_appliance``).

A plugin is any module or object with functions decorated by :data:`hookimpl` and an
``OCTO_PLUGIN_API`` declaration (:mod:`octo_appliance.plugin_api.version`). Built-in step
types and transports are registered exactly like third-party ones: the appliance imports their
modules and hands them to the plugin manager (see :mod:`octo_appliance.plugins`).

Registration goes through registry objects rather than return values so that a plugin can add
several things at once and so the registry can reject a duplicate name *at start*, naming both
plugins involved. Every hook here is documented in docs/plugins.md (a test checks it).
"""

from __future__ import annotations

import pluggy

from octo_appliance.plugin_api.registry import StepTypeRegistry, TransportRegistry

PROJECT_NAME = "octo_appliance"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Decorate plugin functions with this: ``@hookimpl def register_step_types(registry): ...``
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_step_types(registry: StepTypeRegistry) -> None:
    """Add step types with ``registry.add(StepTypeClass)``.

    A step type is a subclass of :class:`octo_appliance.plugin_api.StepType` with a unique
    ``name`` (lower-case, dashes) and its ``properties`` declared as a schema. Adding a name
    that another plugin already added stops the appliance at start with an error naming both
    plugins; a malformed schema stops it naming the property.
    """


@hookspec
def register_transports(registry: TransportRegistry) -> None:
    """Add transports with ``registry.add(TransportClass)``.

    A transport is a subclass of :class:`octo_appliance.plugin_api.Transport`: how the engine
    reaches a target (``listening``, ``polling``, ``ssh``, ...); a target's communication
    style names it. Names are unique; declared settings are checked when it is added.
    """
