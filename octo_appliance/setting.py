"""One setting as :class:`~octo_appliance.config.Config` declares it, and how a value for it
is checked and parsed (from text for flags and environment variables, typed from the TOML
config file), with an error naming where a bad value came from and what was expected.
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
