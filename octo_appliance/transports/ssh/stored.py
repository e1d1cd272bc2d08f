"""SSH targets as stored: the ``ssh`` transport's view of the database and the vault.

A target row holds the address (``uri`` ``ssh://user@host:port``), the pinned host key
(``thumbprint``, hex), the non-secret settings (``transport_settings`` JSON) and the
credentials sealed by the vault (``sealed_credentials``, bound to the row and column, so a
copy into another target does not open). :class:`StoredSshTargets` is what the transport
reads them through (its :class:`~octo_appliance.transports.ssh.pool.TargetSource`); the API
writes them with :func:`seal_credentials`.
"""

from __future__ import annotations

import json
from typing import Any

from octo_appliance.comms import CallFailed
from octo_appliance.db import Target
from octo_appliance.plugin_api.transport_context import SealingVault
from octo_appliance.transports.ssh.settings import (
    DEFAULT_DIRECTORY,
    SettingError,
    SshCredentials,
    SshTarget,
    parse_ssh_uri,
)

CREDENTIALS_COLUMN = "sealed_credentials"


def settings_of(target: Target) -> dict[str, Any]:
    try:
        data = json.loads(target.transport_settings or "{}")
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def seal_credentials(vault: SealingVault, target: Target, credentials: SshCredentials) -> None:
    """Seal the credentials into the row (the caller saves it)."""
    plain = json.dumps(credentials.to_json())
    target.sealed_credentials = vault.seal(plain, target.aad(CREDENTIALS_COLUMN))


def open_credentials(vault: SealingVault, target: Target) -> SshCredentials:
    if not target.sealed_credentials:
        return SshCredentials()
    plain = vault.open(target.sealed_credentials, target.aad(CREDENTIALS_COLUMN))
    return SshCredentials.from_json(json.loads(plain))


def ssh_target(vault: SealingVault, target: Target) -> SshTarget:
    user, host, port = parse_ssh_uri(target.uri)
    settings = settings_of(target)
    return SshTarget(
        id=target.id,
        name=target.name,
        host=host,
        port=port,
        user=user,
        fingerprint=target.thumbprint.lower(),
        trust_on_first_use=bool(settings.get("trust_on_first_use")),
        directory=str(settings.get("directory") or DEFAULT_DIRECTORY),
        credentials=open_credentials(vault, target),
    )


class StoredSshTargets:
    """The transport's target source: rows read fresh at every connection."""

    def __init__(self, vault: SealingVault) -> None:
        self.vault = vault

    def load(self, target_id: str) -> SshTarget:
        target = Target.get_or_none(Target.id == target_id)
        if target is None or target.disabled:
            raise CallFailed("unknown_target", f"target {target_id} was removed or disabled")
        try:
            return ssh_target(self.vault, target)
        except SettingError as exc:
            raise CallFailed(
                "bad_target", f"target {target.name}: {exc.message}", hint="fix the target"
            ) from None

    def record_host_key(self, target_id: str, fingerprint: str) -> None:
        Target.update(thumbprint=fingerprint).where(
            Target.id == target_id, Target.thumbprint == ""
        ).execute()
