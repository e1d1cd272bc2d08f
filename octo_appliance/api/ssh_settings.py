"""The ``ssh`` block of ``/api/v1/targets``: an SSH target's address, pinned host key and
credentials, validated (422 naming the field) and stored (credentials sealed, write-only).

Credentials are never answered, logged or audited: a target shows only which kind it has
(``private_key``, ``password``). On an update, an ``ssh`` block without credentials keeps the
stored ones. See docs/ssh-targets.md.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from octo_appliance.api.schemas import LINE_PATTERN, TEXT_PATTERN, Body, Line, Out
from octo_appliance.db import Target
from octo_appliance.exceptions import ValidationFailed
from octo_appliance.transports.ssh.settings import (
    DEFAULT_DIRECTORY,
    STYLE,
    SettingError,
    SshCredentials,
    check_private_key,
    openssh_fingerprint,
    parse_fingerprint,
    parse_ssh_uri,
    ssh_uri,
)
from octo_appliance.transports.ssh.stored import seal_credentials, settings_of
from octo_appliance.vault.values import Vault

HOST_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$"
USER_PATTERN = r"^[A-Za-z_][A-Za-z0-9._-]{0,63}$"
DIRECTORY_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
#: passwords and passphrases are taken as given (the bodies' whitespace stripping is not
#: applied to them: a space may be part of a secret)
Passphrase = Annotated[
    str, StringConstraints(strip_whitespace=False, max_length=1000, pattern=LINE_PATTERN)
]
Password = Annotated[
    str, StringConstraints(strip_whitespace=False, max_length=1000, pattern=TEXT_PATTERN)
]


class SshSettingsIn(Body):
    host: str = Field(max_length=253, pattern=HOST_PATTERN, description="Host name or IP.")
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(pattern=USER_PATTERN, description="The account to log in as.")
    host_key_fingerprint: Line = Field(
        "",
        max_length=100,
        description="The server's host key: SHA256:<base64> as `ssh-keygen -lf` prints it, "
        "or 64 hex digits. Required unless trust_on_first_use.",
    )
    trust_on_first_use: bool = Field(
        False, description="Pin the key the server presents at the first connection."
    )
    directory: str = Field(
        DEFAULT_DIRECTORY,
        min_length=1,
        max_length=500,
        pattern=DIRECTORY_PATTERN,
        description="Where the transport keeps runner, cache and work dirs (relative: to home).",
    )
    private_key: str = Field(
        "",
        max_length=32000,
        pattern=TEXT_PATTERN,
        description="OpenSSH or PEM private key (write-only).",
    )
    passphrase: Passphrase = Field("", description="The private key's passphrase (write-only).")
    password: Password = Field("", description="Password login, instead of a key (write-only).")


class SshSettingsOut(Out):
    host: str
    port: int
    user: str
    host_key_fingerprint: str | None
    trust_on_first_use: bool
    directory: str
    #: which credentials are stored: ``private_key``, ``password`` or ``none``
    credentials: str


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"invalid SSH settings: {message}",
        details=[{"field": field, "message": message}],
        hint="see docs/ssh-targets.md",
    )


def check_style(style: str, ssh: SshSettingsIn | None, target: Target | None = None) -> None:
    """An ssh block only for SSH targets; one required for a target becoming one."""
    if style != STYLE and ssh is not None:
        raise _invalid("ssh", f"ssh settings are for communication_style '{STYLE}' only")
    if style == STYLE and ssh is None and (target is None or not target.transport_settings):
        raise _invalid("ssh", "an SSH target needs its ssh settings (host, user, credentials)")


def _credentials(ssh: SshSettingsIn, creating: bool) -> SshCredentials | None:
    """The new credentials; None to keep the stored ones (an update that gives none)."""
    if ssh.private_key and ssh.password:
        raise _invalid("ssh.password", "give a private key or a password, not both")
    if ssh.passphrase and not ssh.private_key:
        raise _invalid("ssh.passphrase", "a passphrase goes with a private key")
    if not ssh.private_key and not ssh.password:
        if creating:
            raise _invalid("ssh.private_key", "give a private key or a password")
        return None
    if ssh.private_key:
        try:
            check_private_key(ssh.private_key, ssh.passphrase)
        except SettingError as exc:
            raise _invalid(exc.field, exc.message) from None
    return SshCredentials(ssh.private_key, ssh.passphrase, ssh.password)


def apply_ssh(vault: Vault, target: Target, ssh: SshSettingsIn, creating: bool) -> dict[str, Any]:
    """Validate and write the block into the row (the caller saves it); what to audit."""
    fingerprint = ""
    if ssh.host_key_fingerprint:
        try:
            fingerprint = parse_fingerprint(ssh.host_key_fingerprint)
        except SettingError as exc:
            raise _invalid(exc.field, exc.message) from None
    elif not ssh.trust_on_first_use:
        raise _invalid(
            "ssh.host_key_fingerprint",
            "give the server's host-key fingerprint, or set trust_on_first_use to record the "
            "key presented at the first connection",
        )
    credentials = _credentials(ssh, creating or not target.sealed_credentials)
    kind = credentials.kind if credentials is not None else settings_of(target).get("credentials")
    target.uri = ssh_uri(ssh.user, ssh.host, ssh.port)
    target.thumbprint = fingerprint
    target.certificate = ""
    target.transport_settings = json.dumps(
        {
            "directory": ssh.directory,
            "trust_on_first_use": ssh.trust_on_first_use,
            "credentials": kind or "none",
        }
    )
    if credentials is not None:
        seal_credentials(vault, target, credentials)
    return {
        "host": ssh.host,
        "port": ssh.port,
        "user": ssh.user,
        "host_key_fingerprint": openssh_fingerprint(fingerprint) or None,
        "trust_on_first_use": ssh.trust_on_first_use,
        "directory": ssh.directory,
        "credentials": "replaced" if credentials is not None else "kept",
    }


def ssh_json(target: Target) -> dict[str, Any] | None:
    """The target's ssh block as answered (no secret in it), or None for other styles."""
    if target.communication_style != STYLE or not target.transport_settings:
        return None
    try:
        user, host, port = parse_ssh_uri(target.uri)
    except SettingError:
        user, host, port = "", "", 0
    settings = settings_of(target)
    return {
        "host": host,
        "port": port,
        "user": user,
        "host_key_fingerprint": openssh_fingerprint(target.thumbprint) or None,
        "trust_on_first_use": bool(settings.get("trust_on_first_use")),
        "directory": str(settings.get("directory") or DEFAULT_DIRECTORY),
        "credentials": str(settings.get("credentials") or "none"),
    }
