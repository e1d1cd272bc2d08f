"""What the ``ssh`` transport knows of one target: address, pinned host key, credentials.

The address lives in the target's ``uri`` (``ssh://user@host:port``), the pinned host key in
its ``thumbprint`` (the SHA-256 of the key, as hex: the same digest OpenSSH prints as
``SHA256:<base64>``), the rest in its transport settings (``directory``,
``trust_on_first_use``) and its sealed credentials (a private key with an optional
passphrase, or a password). Pure functions, no connection: the API validates input with
them, the transport reads targets with them.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from octo_appliance.exceptions import OctoError

STYLE = "ssh"
DEFAULT_PORT = 22
#: where the transport keeps its files on the target, relative to the SSH user's home
DEFAULT_DIRECTORY = ".octo"
NOT_A_KEY = "not a private key in OpenSSH or PEM format"
_HEX = re.compile(r"^[0-9a-f]{64}$")
_B64 = re.compile(r"^[A-Za-z0-9+/]{43}=?$")


class SettingError(OctoError):
    """One bad setting: ``field`` names the setting (``private_key``), the message says why."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message, hint="see docs/ssh-targets.md")
        self.field = field_name


@dataclass(frozen=True)
class SshCredentials:
    """How the transport logs in; never printed (``repr`` shows which kind only)."""

    private_key: str = field(default="", repr=False)
    passphrase: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def kind(self) -> str:
        return "private_key" if self.private_key else "password" if self.password else "none"

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}

    @classmethod
    def from_json(cls, raw: Any) -> SshCredentials:
        data = raw if isinstance(raw, dict) else {}
        return cls(**{k: str(data.get(k) or "") for k in ("private_key", "passphrase", "password")})


@dataclass(frozen=True)
class SshTarget:
    """Everything needed to reach one target (read when a connection is opened)."""

    id: str
    name: str
    host: str
    port: int
    user: str
    #: the pinned SHA-256 of the host key (hex); empty until trust on first use records it
    fingerprint: str = ""
    trust_on_first_use: bool = False
    directory: str = DEFAULT_DIRECTORY
    credentials: SshCredentials = field(default_factory=SshCredentials, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.user}@{self.host}:{self.port})"

    def same_endpoint(self, other: SshTarget) -> bool:
        """Whether a connection opened for ``other`` may serve this target as it is now."""
        return (self.host, self.port, self.user, self.fingerprint, self.credentials) == (
            other.host,
            other.port,
            other.user,
            other.fingerprint,
            other.credentials,
        )


def ssh_uri(user: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"ssh://{user}@{shown}:{port}"


def parse_ssh_uri(uri: str) -> tuple[str, str, int]:
    """``(user, host, port)`` of ``ssh://user@host:port``."""
    parts = urlsplit(uri)
    if parts.scheme != STYLE or not parts.hostname or not parts.username:
        raise SettingError("uri", "an SSH target's uri is ssh://user@host:port")
    return parts.username, parts.hostname, parts.port or DEFAULT_PORT


def parse_fingerprint(text: str) -> str:
    """The hex SHA-256 of a host key given as OpenSSH prints it (``SHA256:<base64>``, from
    ``ssh-keygen -lf`` or ``ssh-keyscan | ssh-keygen -lf -``) or as 64 hex digits."""
    value = text.strip()
    if _HEX.match(value.lower()):
        return value.lower()
    if value.startswith("SHA256:") and _B64.match(value[7:]):
        try:
            return base64.b64decode(value[7:].rstrip("=") + "=").hex()
        except (binascii.Error, ValueError):
            pass
    raise SettingError(
        "host_key_fingerprint",
        "a host-key fingerprint is SHA256:<43 base64 characters> (as ssh-keygen -lf prints "
        "it) or 64 hex digits",
    )


def openssh_fingerprint(hex_digest: str) -> str:
    """``SHA256:<base64>``, as OpenSSH shows a key's fingerprint."""
    if not hex_digest:
        return ""
    return "SHA256:" + base64.b64encode(bytes.fromhex(hex_digest)).decode().rstrip("=")


def check_private_key(private_key: str, passphrase: str) -> None:
    """Raise :class:`SettingError` unless the key opens (with its passphrase, if any)."""
    import asyncssh  # the API loads it only for SSH targets

    try:
        asyncssh.import_private_key(private_key, passphrase or None)
    except asyncssh.KeyEncryptionError:
        raise SettingError("passphrase", "the passphrase does not open the private key") from None
    except asyncssh.KeyImportError as exc:
        if "passphrase" in str(exc).lower():
            raise SettingError(
                "passphrase", "the private key is encrypted: give its passphrase"
            ) from None
        raise SettingError("private_key", "not a private key in OpenSSH or PEM format") from None
    except Exception:  # a parser's surprise on arbitrary input is still bad input, not a 500
        raise SettingError("private_key", "not a private key in OpenSSH or PEM format") from None


def remote_path(directory: str, *parts: str) -> str:
    """A path in the transport's directory on the target (always POSIX)."""
    return posixpath.join(directory, *parts)
