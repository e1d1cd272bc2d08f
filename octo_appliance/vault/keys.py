"""The master key and the key ring that holds it (plus, mid-rotation, the previous keys).

The key file is JSON ``{"current": "<b64>", "previous": ["<b64>", ...]}``, mode 0600, written
atomically (temp file, fsync, rename, fsync of the directory) so a crash never leaves a
half-written key. A key's id is the first 16 hex digits of SHA-256 of the key: it names the key
in every sealed value and file header without revealing it.

Other parts of the appliance that need a secret of their own (the password protecting the TLS
private key, for instance) derive it with :func:`derive_secret` instead of storing another
secret; rotation then tells them to re-encrypt through ``octo_appliance.db.rekey.REKEY_HOOKS``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from octo_appliance.durable import write_atomic
from octo_appliance.exceptions import VaultError

KEY_BYTES = 32
KEY_FILE_NAME = "master.key"
ENV_VAR = "OCTO_MASTER_KEY"
#: HKDF salt: fixed, so the same key and purpose always give the same secret.
DERIVE_SALT = b"octo-appliance/derive/v1"


@dataclass(frozen=True)
class MasterKey:
    """256 random bits and their public id."""

    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise VaultError(
                f"a master key must be {KEY_BYTES} bytes, got {len(self.material)}",
                hint="paste it exactly as shown by 'octo-appliance master-key show'",
            )

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.material).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        try:
            material = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise VaultError(
                "the master key is not valid base64",
                hint="paste it exactly as shown by 'octo-appliance master-key show'",
            ) from None
        return cls(material)

    def to_text(self) -> str:
        return base64.b64encode(self.material).decode("ascii")


def derive_secret(ring_key: MasterKey, purpose: str) -> bytes:
    """32 bytes derived from ``ring_key`` for one ``purpose`` (HKDF-SHA256).

    Each purpose (``"file-key-wrap"``, ``"tls-key-password"``, ...) gets an independent secret,
    so no derived secret reveals the master key or another purpose's secret. The result changes
    when the master key is rotated: whoever stores data under it must register a rekey hook.
    """
    if not purpose:
        raise ValueError("derive_secret needs a purpose")
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=DERIVE_SALT,
        info=purpose.encode("utf-8"),
    ).derive(ring_key.material)


@dataclass(frozen=True)
class KeyRing:
    """The current key (seals everything new) and previous keys (still open old values)."""

    current: MasterKey
    previous: tuple[MasterKey, ...] = ()

    @property
    def keys(self) -> tuple[MasterKey, ...]:
        """Every key in the ring, current first."""
        return (self.current, *self.previous)

    def find(self, key_id: str) -> MasterKey:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        raise VaultError(
            f"no master key with id {key_id} is loaded",
            hint="start with the master key this data was written with "
            "(OCTO_MASTER_KEY or master_key_file); after a rotation, data restored from an "
            "older backup needs the key that was current when the backup was made",
        )

    @property
    def rotating(self) -> bool:
        """True while a rotation is unfinished (old keys still in the ring)."""
        return bool(self.previous)

    def to_json(self) -> str:
        return json.dumps(
            {"current": self.current.to_text(), "previous": [k.to_text() for k in self.previous]}
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> KeyRing:
        try:
            raw = json.loads(text)
            current = MasterKey.from_text(raw["current"])
            previous_raw = raw.get("previous", [])
            if not isinstance(previous_raw, list):
                raise TypeError("previous is not a list")
            previous = tuple(MasterKey.from_text(k) for k in previous_raw)
        except (ValueError, KeyError, TypeError, AttributeError, VaultError):
            raise VaultError(
                f"{source} is not a valid master key file",
                hint="restore it from your backup of 'octo-appliance master-key show'",
            ) from None
        return cls(current, previous)


def key_file_path(data_dir: Path, key_file: str | None = None) -> Path:
    return Path(key_file) if key_file else data_dir / KEY_FILE_NAME


def key_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``OCTO_MASTER_KEY`` supplies the key (it then wins over any key file)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get(ENV_VAR))


def write_keyring(path: Path, ring: KeyRing) -> None:
    """Write the key file atomically with mode 0600: readers see the old or the new ring."""
    write_atomic(path, ring.to_json().encode("ascii"), mode=0o600)


def read_keyring_file(path: Path) -> KeyRing:
    """The ring stored at ``path`` (ignoring ``OCTO_MASTER_KEY``)."""
    if not path.is_file():
        raise VaultError(
            f"no master key at {path}",
            hint="start 'octo-appliance serve' once to initialise the data dir, "
            "or set OCTO_MASTER_KEY",
        )
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise VaultError(
            f"cannot read the master key file {path}: {exc.strerror}",
            hint="run as the user that owns the data dir",
        ) from None
    return KeyRing.from_json(text, str(path))


def load_keyring(
    data_dir: Path,
    key_file: str | None = None,
    *,
    create: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[KeyRing, bool]:
    """Load the key ring; with ``create`` make a new key when none exists.

    Returns ``(ring, created)``. ``OCTO_MASTER_KEY`` (base64) wins over the file, for nodes
    that share one key.
    """
    environ = os.environ if environ is None else environ
    if key_from_env(environ):
        return KeyRing(MasterKey.from_text(environ[ENV_VAR])), False
    path = key_file_path(data_dir, key_file)
    if path.exists() or not create:
        return read_keyring_file(path), False
    ring = KeyRing(MasterKey.generate())
    write_keyring(path, ring)
    return ring, True
