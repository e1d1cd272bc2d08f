"""Per-target settings a transport declares: what each of its targets needs (an address, a
pinned key, credentials), validated, stored and published by the targets API for any
transport, third-party ones included (docs/plugins.md, "Per-target settings").

A transport lists them in ``target_settings`` as :class:`~octo_appliance.plugin_api.Property`
declarations (name, type, help, default, ``secret``: the step-type property schema, limited
to the scalar types in :data:`TARGET_SETTING_TYPES`). The API checks a target's
``transport_settings`` block against them (unknown names, types, bounds, required ones), then
hands a :class:`TargetSettings` to the transport's ``check_target_settings`` for what a schema
cannot say (one credential or the other, a key that must parse), which answers a
:class:`CheckedTargetSettings` or raises :class:`TargetSettingsInvalid` naming the fields.

Storage: the non-secret values as JSON in the target's ``transport_settings`` column, the
secret ones as one JSON object sealed by the vault in ``sealed_credentials`` (bound to the
row; master-key rotation re-seals it). Secrets are write-only: the API answers only whether
each is set. ``GET /api/v1/transports`` publishes each transport's declarations, so the
portal can draw a target's form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from octo_appliance.exceptions import OctoError
from octo_appliance.plugin_api.properties import FieldProblem, Property, check_schema

#: the property types a per-target setting may have (one value each, drawn as one input)
TARGET_SETTING_TYPES = ("string", "text", "integer", "boolean")


@dataclass(frozen=True)
class TargetSettings:
    """A target's settings as the API hands them to the transport's check (schema-checked,
    defaults filled in)."""

    #: the non-secret values, every declared one present (its default when not given)
    values: dict[str, Any]
    #: the secret values given by this request (an absent one keeps its stored value)
    secrets: dict[str, str] = field(repr=False)
    #: the names of the secrets stored for the target before this request
    stored_secrets: frozenset[str] = frozenset()
    #: True when the target is being created (nothing stored yet)
    creating: bool = True


@dataclass(frozen=True)
class CheckedTargetSettings:
    """What the transport makes of a target's settings: what the API stores."""

    values: dict[str, Any]
    #: the complete new set of secrets, or None to keep the stored ones unchanged
    secrets: dict[str, str] | None = field(default=None, repr=False)
    #: the target's ``uri`` (shown in lists; e.g. ``ssh://user@host:22``); None: unchanged
    uri: str | None = None
    #: the target's ``thumbprint`` (the pinned identity, hex); None: unchanged
    thumbprint: str | None = None


class TargetSettingsInvalid(OctoError):
    """Raised by a transport's ``check_target_settings``: each problem names a setting."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field} {p.message}" for p in problems))
        self.problems = list(problems)


def check_target_schema(schema: object) -> str | None:
    """What is wrong with a transport's ``target_settings`` declaration, or None."""
    wrong = check_schema(schema)
    if wrong is not None:
        return wrong.replace("properties must", "target_settings must")
    assert isinstance(schema, tuple)
    for prop in schema:
        if prop.type not in TARGET_SETTING_TYPES:
            return f"target setting {prop.name} has type {prop.type!r}; use one of " + ", ".join(
                TARGET_SETTING_TYPES
            )
        if prop.name.startswith("_"):
            return f"target setting {prop.name} starts with '_' (reserved)"
    return None


def split_settings(
    schema: Sequence[Property],
    given: Mapping[str, Any],
    stored_secrets: frozenset[str],
    creating: bool,
) -> tuple[TargetSettings, list[FieldProblem]]:
    """``given`` checked against ``schema``: the settings (defaults filled in) and every
    problem. A required secret already stored may be left out (it is kept)."""
    declared = {prop.name: prop for prop in schema}
    names = ", ".join(declared) or "none"
    problems = [
        FieldProblem(key, f"is not a setting of this transport (its settings: {names})")
        for key in sorted(set(given) - set(declared))
    ]
    values: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for prop in schema:
        value = given.get(prop.name)
        if prop.secret and value in (None, "") and prop.name in stored_secrets and not creating:
            continue
        message = prop.problem(value)
        if message:
            problems.append(FieldProblem(prop.name, message))
            continue
        if prop.secret:
            if value not in (None, ""):
                secrets[prop.name] = str(value)
        else:
            values[prop.name] = prop.default if value is None else value
    settings = TargetSettings(values, secrets, stored_secrets, creating)
    return settings, problems


def secret_status(schema: Sequence[Property], stored: frozenset[str]) -> dict[str, str]:
    """``{name: "set" | "not set"}`` for each declared secret: all the API answers of them."""
    return {p.name: ("set" if p.name in stored else "not set") for p in schema if p.secret}


__all__ = [
    "TARGET_SETTING_TYPES",
    "CheckedTargetSettings",
    "TargetSettings",
    "TargetSettingsInvalid",
    "check_target_schema",
    "secret_status",
    "split_settings",
]
