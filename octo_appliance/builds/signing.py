"""The appliance's Ed25519 signing key: made once, kept as a sealed file under the master key.

The key signs build manifests (:mod:`octo_appliance.builds.manifest`); agents receive its
public half at registration and check every build they download against it. It lives in the
data dir as a sealed file (``files/keys/signing-ed25519.sealed``, the raw 32-byte private key
sealed by the vault), so it is backed up with the data dir's other sealed files and re-wrapped
by ``master-key rotate`` like them: a rotation changes the key that protects it, never the
signing key itself, so agents keep trusting the appliance across rotations. A data dir made
before this key existed gets one the first time it is needed.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from octo_appliance.vault.files import FILES_DIR_NAME, SealedWriter, read_sealed_file
from octo_appliance.vault.values import Vault

KEYS_DIR_NAME = "keys"
SIGNING_KEY_NAME = "signing-ed25519.sealed"
#: the sealed file's associated data: it opens under this name only
SIGNING_KEY_AAD = b"octo-appliance/signing-key/ed25519"


def signing_key_path(data_dir: Path) -> Path:
    return data_dir / FILES_DIR_NAME / KEYS_DIR_NAME / SIGNING_KEY_NAME


def load_or_create_signing_key(vault: Vault, data_dir: Path) -> Ed25519PrivateKey:
    """The signing key of this data dir, created (and sealed) on first use.

    Several processes may share the directory (a server and a CLI command beside it, or
    several nodes starting at once on one ``shared_dir``, where a lock may not reach across
    machines): the file is published only if none exists yet (a hard link, atomic on NFS too),
    so the first writer wins and every other one reads its key.
    """
    path = signing_key_path(data_dir)
    if not path.is_file():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        with SealedWriter(vault, path, SIGNING_KEY_AAD, exclusive=True) as writer:
            writer.write(key.private_bytes_raw())
        if writer.created:
            return key
    return Ed25519PrivateKey.from_private_bytes(read_sealed_file(vault, path, SIGNING_KEY_AAD))
