"""SSH targets as stored: the ``ssh`` transport's view of the database and the vault.

A target row holds the address (``uri`` ``ssh://user@host:port``), the pinned host key
(``thumbprint``, hex), and the per-target settings the transport declares
(:mod:`.declared`), which the targets API stores for every transport alike
(:mod:`octo_appliance.db.transport_settings`: JSON, and the credentials sealed by the vault,
bound to the row). :class:`StoredSshTargets` is what the transport reads them through (its
:class:`~octo_appliance.transports.ssh.pool.TargetSource`).
"""

from __future__ import annotations

from octo_appliance.comms import CallFailed
from octo_appliance.db import Target
from octo_appliance.db.transport_settings import open_secrets, stored_values
from octo_appliance.plugin_api.transport_context import SealingVault
from octo_appliance.transports.ssh.settings import (
    DEFAULT_DIRECTORY,
    SettingError,
    SshCredentials,
    SshTarget,
    parse_ssh_uri,
)


def ssh_target(vault: SealingVault, target: Target) -> SshTarget:
    user, host, port = parse_ssh_uri(target.uri)
    settings = stored_values(target)
    return SshTarget(
        id=target.id,
        name=target.name,
        host=host,
        port=port,
        user=user,
        fingerprint=target.thumbprint.lower(),
        trust_on_first_use=bool(settings.get("trust_on_first_use")),
        directory=str(settings.get("directory") or DEFAULT_DIRECTORY),
        credentials=SshCredentials.from_json(open_secrets(vault, target)),
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
