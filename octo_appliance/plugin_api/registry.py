"""The registries plugins fill: name -> class, for step types and for transports.

They live in the plugin API (not in the loader) so built-ins and third parties type their hook
implementations against them. A registry rejects, at start, a class that is not a subclass of
its base, a malformed name, a name added twice (naming both plugins) and, for transports,
malformed setting and per-target setting declarations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_api.properties import check_schema
from octo_appliance.plugin_api.settings import check_declarations
from octo_appliance.plugin_api.steps import StepType, TargetCode
from octo_appliance.plugin_api.target_settings import check_target_schema
from octo_appliance.plugin_api.transports import Transport

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

T = TypeVar("T")


@dataclass(frozen=True)
class Registered(Generic[T]):
    """What a registry holds for one name: the class and the plugin that added it."""

    name: str
    cls: type[T]
    plugin: str


@dataclass
class Registry(Generic[T]):
    """Name -> class, rejecting duplicates and malformed names with the plugins named."""

    kind: str
    base: type[T]
    #: the class attribute holding what the class declares, and its check (a problem or None)
    declaration: str
    check_declaration: Callable[[object], str | None]
    _entries: dict[str, Registered[T]] = field(default_factory=dict)
    #: set by the plugin manager around each plugin's hook call
    current_plugin: str = "?"

    def add(self, cls: type[T]) -> None:
        """Register ``cls`` under its ``name`` attribute."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(
                f"plugin {self.current_plugin} added {cls!r} as a {self.kind}, "
                f"which is not a subclass of {self.base.__module__}.{self.base.__name__}"
            )
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PluginError(
                f"plugin {self.current_plugin} added a {self.kind} with invalid name {name!r}",
                hint="names are lower-case words joined by dashes, like run-script",
            )
        if name in self._entries:
            first = self._entries[name].plugin
            raise PluginError(
                f"{self.kind} '{name}' is registered twice: by {first} and by "
                f"{self.current_plugin}",
                hint="uninstall or rename one of the two plugins",
            )
        self.check(cls)
        self._entries[name] = Registered(name, cls, self.current_plugin)

    def check(self, cls: type[T]) -> None:
        """Refuse a malformed declaration (a schema, settings) when the class is added."""
        problem = self.check_declaration(getattr(cls, self.declaration))
        if problem:
            raise PluginError(
                f"plugin {self.current_plugin}: {self.kind} '{getattr(cls, 'name', '?')}' "
                f"declares bad {self.declaration}: {problem}",
                hint="see docs/plugins.md for how to declare them",
            )

    def get(self, name: str) -> type[T]:
        return self._entries[name].cls

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registered[T]]:
        return iter(sorted(self._entries.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._entries)

    def discard(self, name: str) -> None:
        """Forget ``name``: the loader undoes what a plugin that failed half-way added."""
        self._entries.pop(name, None)


class StepTypeRegistry(Registry[StepType]):
    """Filled by ``register_step_types`` hooks; checks each step type's property schema."""

    def __init__(self) -> None:
        super().__init__("step type", StepType, "properties", check_schema)

    def check(self, cls: type[StepType]) -> None:
        """The property schema (as every registry checks its declaration), then the
        target-side code a step type ships, if any."""
        super().check(cls)
        code = cls.target_code
        if code is None:
            return
        wrong = code.problem() if isinstance(code, TargetCode) else "is not a TargetCode"
        if wrong:
            raise PluginError(
                f"plugin {self.current_plugin}: step type '{cls.name}' declares bad target "
                f"code: {wrong}",
                hint='see docs/plugins.md, "Code on the target"',
            )


class TransportRegistry(Registry[Transport]):
    """Filled by ``register_transports`` hooks; checks each transport's declared settings."""

    def __init__(self) -> None:
        super().__init__("transport", Transport, "settings", check_declarations)

    def check(self, cls: type[Transport]) -> None:
        """Its settings (as every registry checks its declaration), then its per-target
        settings schema."""
        super().check(cls)
        wrong = check_target_schema(cls.target_settings)
        if wrong:
            raise PluginError(
                f"plugin {self.current_plugin}: transport '{cls.name}' declares bad target "
                f"settings: {wrong}",
                hint='see docs/plugins.md, "Per-target settings"',
            )
