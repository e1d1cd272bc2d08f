"""The ``transport_settings`` block of ``/api/v1/targets``: the per-target settings a target's
transport declares (:mod:`octo_appliance.plugin_api.target_settings`), checked (422 naming
``transport_settings.<name>``), stored and answered the same way for every transport.

Stored by :mod:`octo_appliance.db.transport_settings` (non-secret values as JSON, secret ones
sealed by the vault, bound to the row). Secrets are never answered, logged or audited:
the answer's ``transport_secrets`` says ``set`` or ``not set`` for each, the audit ``replaced``
or ``kept``. On an update, a block without a secret keeps the stored one.
"""

from __future__ import annotations

from typing import Any

from octo_appliance.db import Target
from octo_appliance.db.transport_settings import store, stored_secrets, stored_values
from octo_appliance.exceptions import ValidationFailed
from octo_appliance.plugin_api.properties import FieldProblem
from octo_appliance.plugin_api.registry import TransportRegistry
from octo_appliance.plugin_api.target_settings import (
    TargetSettingsInvalid,
    secret_status,
    split_settings,
)
from octo_appliance.plugin_api.transport_context import SealingVault
from octo_appliance.plugin_api.transports import TargetAddress, Transport

FIELD = "transport_settings"


def _invalid(problems: list[FieldProblem], hint: str) -> ValidationFailed:
    details = [{"field": f"{FIELD}.{p.field}", "message": p.message} for p in problems]
    summary = "; ".join(f"{p.field} {p.message}" for p in problems)
    return ValidationFailed(f"invalid transport settings: {summary}", details=details, hint=hint)


def _refused(message: str) -> ValidationFailed:
    return ValidationFailed(
        message,
        details=[{"field": FIELD, "message": message}],
        hint="GET /api/v1/transports lists each transport's per-target settings",
    )


def transport_of(registry: TransportRegistry, style: str) -> type[Transport] | None:
    """The transport class of a communication style, if one is registered."""
    return registry.get(style) if style in registry else None


def check_presence(
    registry: TransportRegistry, style: str, block: dict[str, Any] | None, target: Target | None
) -> None:
    """A block only for a transport that declares per-target settings; one required when a
    target takes that transport without settings stored."""
    transport = transport_of(registry, style)
    declares = transport is not None and bool(transport.target_settings)
    if block is not None and not declares:
        raise _refused(f"communication style '{style}' takes no transport settings")
    has_stored = target is not None and target.communication_style == style
    if declares and block is None and not (has_stored and target and target.transport_settings):
        raise _refused(f"a target of communication style '{style}' needs its transport settings")


def apply_settings(
    vault: SealingVault,
    registry: TransportRegistry,
    target: Target,
    block: dict[str, Any],
    creating: bool,
) -> dict[str, Any]:
    """Check the block and write it into the row (the caller saves it); what to audit."""
    transport = transport_of(registry, target.communication_style)
    assert transport is not None, "check_presence() refuses a block for this style"
    hint = f"see the documentation of the {transport.name} transport (GET /api/v1/transports)"
    stored = frozenset() if creating else stored_secrets(target)
    settings, problems = split_settings(transport.target_settings, block, stored, creating)
    if problems:
        raise _invalid(problems, hint)
    try:
        checked = transport.check_target_settings(settings)
    except TargetSettingsInvalid as exc:
        raise _invalid(exc.problems, hint) from None
    secrets = checked.secrets
    store(vault, target, checked.values, secrets, kept=sorted(stored))
    if checked.uri is not None:
        target.uri = checked.uri
    if checked.thumbprint is not None:
        target.thumbprint = checked.thumbprint
    audited: dict[str, Any] = dict(checked.values)
    for prop in transport.target_settings:
        if prop.secret:
            audited[prop.name] = "replaced" if secrets is not None else "kept"
    return audited


def settings_json(registry: TransportRegistry, target: Target) -> tuple[Any, Any]:
    """``(transport_settings, transport_secrets)`` as answered: the shown values and
    ``{secret: "set" | "not set"}``; ``(None, None)`` for a transport without any."""
    transport = transport_of(registry, target.communication_style)
    if transport is None or not transport.target_settings or not target.transport_settings:
        return None, None
    values = {k: v for k, v in stored_values(target).items() if not k.startswith("_")}
    declared = {p.name for p in transport.target_settings if not p.secret}
    values = {k: v for k, v in values.items() if k in declared}
    address = TargetAddress(
        id=target.id,
        name=target.name,
        communication_style=target.communication_style,
        uri=target.uri,
        thumbprint=target.thumbprint,
    )
    shown = transport.shown_target_settings(values, address)
    return shown, secret_status(transport.target_settings, stored_secrets(target))
