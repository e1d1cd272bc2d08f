"""The master key and the key ring that holds it (plus, mid-rotation, the previous keys).

The key file is JSON ``{"current": "<b64>", "previous": ["<b64>", ...]}``, mode 0600, written
atomically (temp file, fsync, rename) so a crash never leaves a half-written key. A key's id is
the first 16 hex digits of SHA-256 of the key: it names the key in every sealed value and file
header without revealing it.
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

from octo_appliance.exceptions import VaultError

KEY_BYTES = 32
KEY_FILE_NAME = "master.key"
ENV_VAR = "OCTO_MASTER_KEY"


@dataclass(frozen=True)
class MasterKey:
    """256 random bits and their public id."""

    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise VaultError(f"a master key must be {KEY_BYTES} bytes, got {len(self.material)}")

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


@dataclass(frozen=True)
class KeyRing:
    """The current key (seals everything new) and previous keys (still open old values)."""

    current: MasterKey
    previous: tuple[MasterKey, ...] = ()

    def find(self, key_id: str) -> MasterKey:
        for key in (self.current, *self.previous):
            if key.key_id == key_id:
                return key
        raise VaultError(
            f"no master key with id {key_id} is loaded",
            hint="start with the master key this data was written with "
            "(OCTO_MASTER_KEY or master_key_file)",
        )

    @property
    def rotating(self) -> bool:
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
            previous = tuple(MasterKey.from_text(k) for k in raw.get("previous", []))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise VaultError(
                f"{source} is not a valid master key file",
                hint="restore it from your backup of 'octo-appliance master-key show'",
            ) from None
        return cls(current, previous)


def key_file_path(data_dir: Path, key_file: str | None = None) -> Path:
    return Path(key_file) if key_file else data_dir / KEY_FILE_NAME


def write_keyring(path: Path, ring: KeyRing) -> None:
    """Write the key file atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, ring.to_json().encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    if environ.get(ENV_VAR):
        return KeyRing(MasterKey.from_text(environ[ENV_VAR])), False
    path = key_file_path(data_dir, key_file)
    if path.is_file():
        return KeyRing.from_json(
            path.read_text(encoding="ascii", errors="replace"), str(path)
        ), False
    if not create:
        raise VaultError(
            f"no master key at {path}",
            hint="start 'octo-appliance serve' once to initialise the data dir, "
            "or set OCTO_MASTER_KEY",
        )
    ring = KeyRing(MasterKey.generate())
    write_keyring(path, ring)
    return ring, True
