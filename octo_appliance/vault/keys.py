"""The master key and the key ring that holds it (plus, mid-rotation, the previous keys).

The key file is JSON ``{"current": "<b64>", "previous": ["<b64>", ...]}`` (a file holding only
the base64 key, as a secrets manager would mount it, is read too), mode 0600, written
atomically (temp file, fsync, rename, fsync of the directory) so a crash never leaves a
half-written key. It lives outside the data dir (:func:`default_key_file`; docs/vault.md) so a
copy or backup of the data dir holds no key. A key's id is the first 16 hex digits of SHA-256
of the key: it names the key in every sealed value and file header without revealing it.

Other parts of the appliance that need a secret of their own (the password protecting the TLS
private key, for instance) derive it with :func:`derive_secret` instead of storing another
secret; rotation then tells them to re-encrypt through ``octo_appliance.db.rekey.REKEY_HOOKS``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from octo_appliance.exceptions import VaultError
from octo_appliance.filesystem.durable import create_once, fsync_dir, write_atomic

KEY_BYTES = 32
KEY_FILE_NAME = "master.key"
ENV_VAR = "OCTO_MASTER_KEY"
#: Where root's key lives by default (other users: ``$XDG_CONFIG_HOME/octo-appliance``).
SYSTEM_KEY_DIR = Path("/etc/octo-appliance")
KEY_DIR_NAME = "octo-appliance"
#: HKDF salt: fixed, so the same key and purpose always give the same secret.
DERIVE_SALT = b"octo-appliance/derive/v1"

log = logging.getLogger("octo_appliance.vault")


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
        if text.strip() and not text.lstrip().startswith("{"):
            try:  # just the base64 key, as 'master-key show' prints it
                return cls(MasterKey.from_text(text))
            except VaultError:
                pass  # reported below, without echoing any of the file
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


def default_key_file() -> Path:
    """``/etc/octo-appliance/master.key`` as root, else ``$XDG_CONFIG_HOME/octo-appliance/...``."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return SYSTEM_KEY_DIR / KEY_FILE_NAME
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home).expanduser() / KEY_DIR_NAME / KEY_FILE_NAME


def key_file_path(key_file: str | None = None) -> Path:
    """Where the key belongs: the ``master_key_file`` setting, else :func:`default_key_file`."""
    return Path(key_file).expanduser() if key_file else default_key_file()


def legacy_key_file(data_dir: Path) -> Path:
    """Where versions before 2026-12 kept the key (inside the data dir): moved out at start."""
    return data_dir / KEY_FILE_NAME


def find_key_file(data_dir: Path, key_file: str | None = None) -> Path:
    """The file that holds the key now: its place, else a key not yet moved out of the data dir.

    Commands run beside a server (``master-key``, ``api-key``) use this, so they keep working
    between an upgrade and the first start that moves the key.
    """
    path = key_file_path(key_file)
    legacy = legacy_key_file(data_dir)
    if not path.exists() and legacy.is_file():
        return legacy
    return path


def key_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``OCTO_MASTER_KEY`` supplies the key (it then wins over any key file)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get(ENV_VAR))


def write_keyring(path: Path, ring: KeyRing) -> None:
    """Write the key file atomically with mode 0600 (its directory 0700 when created here)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # another node may race
    write_atomic(path, ring.to_json().encode("ascii"), mode=0o600)


def read_keyring_file(path: Path) -> KeyRing:
    """The ring stored at ``path`` (ignoring ``OCTO_MASTER_KEY``)."""
    if not path.is_file():
        raise VaultError(
            f"no master key at {path}",
            hint="start 'octo-appliance serve' once to initialise the data dir; to restore, put "
            "the key there (the text 'master-key show' printed) or set OCTO_MASTER_KEY",
        )
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise VaultError(
            f"cannot read the master key file {path}: {exc.strerror}",
            hint="run as the user that owns the data dir",
        ) from None
    return KeyRing.from_json(text, str(path))


@dataclass(frozen=True)
class LoadedKey:
    """The ring and where it came from, for the start banner."""

    ring: KeyRing
    #: the key file, or None when ``OCTO_MASTER_KEY`` gave the key
    path: Path | None
    created: bool = False
    #: the data dir's ``master.key`` this start moved to ``path``
    moved_from: Path | None = None


def _move_out_of_data_dir(legacy: Path, path: Path) -> None:
    """Copy the key to ``path`` durably, then remove it from the data dir.

    Works across file systems (``/var/lib`` and ``/etc`` often differ, so no rename); a crash
    in between leaves two equal copies, which the next start resolves.
    """
    ring = read_keyring_file(legacy)
    write_keyring(path, ring)
    legacy.unlink()
    fsync_dir(legacy.parent)
    log.warning(
        "moved the master key out of the data dir: from %s to %s (back it up apart from the "
        "data dir and the database)",
        legacy,
        path,
    )


def _create_key_file(path: Path) -> LoadedKey:
    """A new key at ``path``, unless another node sharing the file's directory made one first:
    then its key (so nodes started at once on one ``master_key_file`` agree, and pass the key id
    check)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    ring = KeyRing(MasterKey.generate())
    text = ring.to_json().encode("ascii")
    stored = create_once(path, text, mode=0o600)
    if stored == text:
        return LoadedKey(ring, path, created=True)
    return LoadedKey(read_keyring_file(path), path)


def _resolve_two_copies(legacy: Path, path: Path) -> None:
    """A key in its place and another in the data dir: equal copies are the trace of a move."""
    if read_keyring_file(legacy) != read_keyring_file(path):
        raise VaultError(
            f"two different master keys: {path} and {legacy}",
            hint="keep the one this data was sealed with (the other start fails with 'no master "
            "key with id ...'), delete the other, and start again",
        )
    legacy.unlink()
    fsync_dir(legacy.parent)
    log.warning("removed %s: the same key is at %s", legacy, path)


def open_keyring(
    data_dir: Path,
    key_file: str | None = None,
    *,
    create: bool = False,
    environ: Mapping[str, str] | None = None,
) -> LoadedKey:
    """Load the key ring; with ``create`` (a server start) also put the key in its place.

    ``OCTO_MASTER_KEY`` (base64) wins over any file, for nodes that share one key. With
    ``create``, a key still in the data dir is moved to its place and, when there is no key
    at all, a new one is made there; without it the key is only read (see
    :func:`find_key_file`).
    """
    environ = os.environ if environ is None else environ
    if key_from_env(environ):
        return LoadedKey(KeyRing(MasterKey.from_text(environ[ENV_VAR])), None)
    path = key_file_path(key_file)
    legacy = legacy_key_file(data_dir)
    if not create:
        found = find_key_file(data_dir, key_file)
        return LoadedKey(read_keyring_file(found), found)
    moved_from = None
    if legacy.is_file() and legacy.resolve() != path.resolve():
        if path.exists():
            _resolve_two_copies(legacy, path)
        else:
            _move_out_of_data_dir(legacy, path)
            moved_from = legacy
    if path.exists():
        loaded = LoadedKey(read_keyring_file(path), path, moved_from=moved_from)
    else:
        loaded = _create_key_file(path)
    if key_file is None:  # our own directory (never tighten one the operator named)
        os.chmod(path.parent, 0o700)
    elif data_dir.resolve() in path.resolve().parents:
        log.warning(
            "master_key_file %s is inside the data dir: a copy of the data dir holds the key "
            "('octo-appliance backup' leaves it out); move it outside the data dir",
            path,
        )
    return loaded
