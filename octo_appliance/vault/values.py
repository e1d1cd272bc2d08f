"""Sealed values: AES-256-GCM with the owning row and column bound as associated data.

A sealed value is text ``v1.<key id>.<base64url(nonce || ciphertext+tag)>``. Binding the
row/column means a ciphertext copied into another row or column does not open. The key id in
clear lets rotation find values still sealed under an old key without decrypting anything.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from octo_appliance.exceptions import VaultError
from octo_appliance.types import AssociatedData
from octo_appliance.vault.keys import KeyRing, derive_secret

FORMAT = "v1"
NONCE_BYTES = 12
TAG_BYTES = 16


def token_key_id(token: str) -> str:
    """The id of the key a sealed value was sealed with (no decryption)."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != FORMAT or not parts[1]:
        raise VaultError(
            "a stored value is not in the sealed format",
            hint="it was edited outside the appliance; set the value again",
        )
    return parts[1]


def token_prefix(key_id: str) -> str:
    """The text every value sealed under ``key_id`` starts with (for database filters)."""
    return f"{FORMAT}.{key_id}."


class Vault:
    """Seals and opens values with the key ring; cheap to share between threads."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._ciphers = {key.key_id: AESGCM(key.material) for key in ring.keys}
        self._derived: dict[tuple[str, str], AESGCM] = {}

    @property
    def current_key_id(self) -> str:
        return self.ring.current.key_id

    def derived_cipher(self, key_id: str, purpose: str) -> AESGCM:
        """AES-256-GCM under ``derive_secret(key, purpose)``; raises with a hint if not loaded."""
        cached = self._derived.get((key_id, purpose))
        if cached is None:
            cached = AESGCM(derive_secret(self.ring.find(key_id), purpose))
            self._derived[(key_id, purpose)] = cached
        return cached

    def seal(self, plaintext: str, aad: AssociatedData) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current_key_id].encrypt(nonce, plaintext.encode("utf-8"), aad)
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{FORMAT}.{self.current_key_id}.{body}"

    def open(self, token: str, aad: AssociatedData) -> str:
        key_id = token_key_id(token)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            self.ring.find(key_id)  # raises with a hint
            raise AssertionError("unreachable")
        try:
            raw = base64.urlsafe_b64decode(token.split(".")[2])
            if len(raw) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("too short")
            plain = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
            return plain.decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError):
            raise VaultError(
                "a stored value does not decrypt: it was altered or moved to another row",
                hint="set the value again; if many values fail, check that the appliance runs "
                "with the master key the data was written with",
            ) from None

    def reseal(self, token: str, aad: AssociatedData) -> str:
        """The value re-sealed under the current key (unchanged if it already is)."""
        if token_key_id(token) == self.current_key_id:
            return token
        return self.seal(self.open(token, aad), aad)
