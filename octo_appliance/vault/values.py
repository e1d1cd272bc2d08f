"""Sealed values: AES-256-GCM with the owning row and column bound as associated data.

A sealed value is text ``v1.<key id>.<base64url(nonce || ciphertext+tag)>``. Binding the
row/column means a ciphertext copied into another row or column does not open.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from octo_appliance.exceptions import VaultError
from octo_appliance.types import AssociatedData
from octo_appliance.vault.keys import KeyRing

FORMAT = "v1"
NONCE_BYTES = 12


class Vault:
    """Seals and opens values with the key ring; cheap to share between threads."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._ciphers = {key.key_id: AESGCM(key.material) for key in (ring.current, *ring.previous)}

    @property
    def current_key_id(self) -> str:
        return self.ring.current.key_id

    def seal(self, plaintext: str, aad: AssociatedData) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current_key_id].encrypt(nonce, plaintext.encode("utf-8"), aad)
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{FORMAT}.{self.current_key_id}.{body}"

    def key_id_of(self, token: str) -> str:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != FORMAT:
            raise VaultError("a stored value is not in the sealed format")
        return parts[1]

    def open(self, token: str, aad: AssociatedData) -> str:
        key_id = self.key_id_of(token)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            self.ring.find(key_id)  # raises with a hint
            raise AssertionError("unreachable")
        try:
            raw = base64.urlsafe_b64decode(token.split(".")[2])
            plain = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except (InvalidTag, binascii.Error, ValueError):
            raise VaultError(
                "a stored value does not decrypt: it was altered or moved to another row"
            ) from None
        return plain.decode("utf-8")
