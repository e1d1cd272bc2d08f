"""One declared setting (:class:`Setting`) and how a value for it is parsed and checked.

The appliance's settings are declared as the fields of :class:`~octo_appliance.config.Config`
and a transport's in its ``settings`` (docs/plugins.md); both become :class:`Setting` values,
so a value is checked the same way whichever declared it and wherever it came from (a flag,
an ``OCTO_*`` variable, the config file): a bad one is a :class:`ConfigError` naming its
source and what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from octo_appliance.exceptions import ConfigError

_BOOLEAN_WORDS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(
    ("0", "false", "no", "off"), False
)


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:PORT`` for IPv6) with a clear error."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(
            f"'{value}' is not HOST:PORT", hint="write it like 0.0.0.0:8443 or 127.0.0.1:0"
        )
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"port '{port_text}' in '{value}' is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} in '{value}' is out of range 0-65535")
    return host, port


@dataclass(frozen=True)
class Setting:
    """One setting as :class:`Config` declares it, with how to check a value for it."""

    name: str
    default: Any
    help: str
    type: type
    optional: bool = False
    minimum: int | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[str], object] | None = None
    expected_text: str | None = None

    @property
    def env_var(self) -> str:
        return "OCTO_" + self.name.upper()

    @property
    def expected(self) -> str:
        """What a good value looks like, for error messages."""
        if self.expected_text:
            return self.expected_text
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type is bool:
            return "true or false"
        if self.type is int:
            floor = "" if self.minimum is None else f" of at least {self.minimum}"
            return f"a whole number{floor}"
        return "text" + (" (empty for none)" if self.optional else "")

    def convert(self, raw: object, source: str, *, text: bool) -> Any:
        """``raw`` checked (and parsed from text when ``text``: flags and env), else a
        :class:`ConfigError` naming ``source`` and what was expected."""
        problem = f"got {_shown(raw)}"
        value: Any = raw
        if text and isinstance(raw, str) and self.type is not str:
            value = self._from_text(raw.strip())
        if self.type is int and not isinstance(value, bool) and isinstance(value, int):
            if self.minimum is None or value >= self.minimum:
                return value
        elif self.type is bool and isinstance(value, bool):
            return value
        elif self.type is str and isinstance(value, str):
            if self.optional and not value:
                return None
            if self.choices:
                if value.lower() in self.choices:
                    return value.lower()
            elif self.check is None:
                return value
            else:
                try:
                    self.check(value)
                    return value
                except ConfigError as exc:
                    problem = exc.message
        raise ConfigError(
            f"{source}: {problem}; expected {self.expected}",
            hint=f"correct {source} (docs/configuration.md lists every setting)",
        )

    def _from_text(self, raw: str) -> object:
        if self.type is bool:
            return _BOOLEAN_WORDS.get(raw.lower(), raw)
        try:
            return int(raw)
        except ValueError:
            return raw


def _shown(value: object) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
