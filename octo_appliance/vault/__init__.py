"""The master-key vault: key ring, sealed values (AES-256-GCM) and the encrypted file format.

The vault sits below the database: it knows keys and bytes, not tables.
"""

from __future__ import annotations

from octo_appliance.vault.keys import KeyRing, MasterKey
from octo_appliance.vault.values import Vault

__all__ = ["KeyRing", "MasterKey", "Vault"]
