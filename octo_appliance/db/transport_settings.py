"""A target's per-target transport settings as stored, read and written the same way for
every transport (docs/plugins.md, "Per-target settings").

The non-secret values are JSON in ``target.transport_settings`` (plus ``_secrets``, the names
of the secrets stored, so the API can say which are set without opening them); the secret
values are one JSON object sealed by the vault in ``target.sealed_credentials``, bound to the
row and column (a copy into another row does not open; master-key rotation re-seals it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from octo_appliance.db.infrastructure import Target

#: the column the secrets are sealed in (and, with the row's id, bound to)
SEALED_COLUMN = "sealed_credentials"
#: the key of the ``transport_settings`` JSON that lists the secrets stored
SECRETS_KEY = "_secrets"


class Sealer(Protocol):
    def seal(self, plaintext: str, aad: bytes) -> str: ...

    def open(self, token: str, aad: bytes) -> str: ...


def stored_values(target: Target) -> dict[str, Any]:
    """The non-secret settings as stored (``_``-keys included)."""
    try:
        data = json.loads(target.transport_settings or "{}")
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def stored_secrets(target: Target) -> frozenset[str]:
    """The names of the secrets stored for the target (without opening them)."""
    data = stored_values(target)
    names = data.get(SECRETS_KEY)
    if isinstance(names, list):
        return frozenset(str(name) for name in names)
    # rows written by the first SSH version (schema 7) name only the credential kind
    kind = data.get("credentials")
    return frozenset({kind}) if target.sealed_credentials and isinstance(kind, str) else frozenset()


def store(
    vault: Sealer,
    target: Target,
    values: Mapping[str, Any],
    secrets: Mapping[str, str] | None,
    kept: Sequence[str] = (),
) -> None:
    """Write the settings into the row (the caller saves it): ``secrets`` None keeps the
    sealed ones (whose names are ``kept``)."""
    names = sorted(secrets) if secrets is not None else sorted(kept)
    target.transport_settings = json.dumps({**values, SECRETS_KEY: names})
    if secrets is not None:
        target.sealed_credentials = vault.seal(json.dumps(dict(secrets)), target.aad(SEALED_COLUMN))


def open_secrets(vault: Sealer, target: Target) -> dict[str, str]:
    """The target's secrets in the clear: for its transport only, never answered or logged."""
    if not target.sealed_credentials:
        return {}
    data = json.loads(vault.open(target.sealed_credentials, target.aad(SEALED_COLUMN)))
    return {str(k): str(v) for k, v in data.items() if v} if isinstance(data, dict) else {}
