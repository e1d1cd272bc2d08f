"""Sealed values: round trip, associated data, tampering, key ids and re-sealing."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given
from hypothesis import strategies as st

from octo_appliance.exceptions import VaultError
from octo_appliance.vault import KeyRing, MasterKey, Vault
from octo_appliance.vault.values import token_key_id, token_prefix

AAD = b"variable/var_0123456789ab/sealed_value"


@pytest.fixture
def vault() -> Vault:
    return Vault(KeyRing(MasterKey.generate()))


def _flip(token: str, position: int) -> str:
    version, key_id, body = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[position] ^= 0x01
    return f"{version}.{key_id}.{base64.urlsafe_b64encode(bytes(raw)).decode()}"


@given(st.text(max_size=300))
def test_round_trip_of_any_text(text: str) -> None:
    vault = Vault(KeyRing(MasterKey(b"k" * 32)))
    assert vault.open(vault.seal(text, AAD), AAD) == text


def test_token_names_the_key_and_hides_the_text(vault: Vault) -> None:
    token = vault.seal("hunter2-hunter2", AAD)
    assert token.startswith(token_prefix(vault.current_key_id))
    assert token_key_id(token) == vault.current_key_id
    assert "hunter2" not in token
    assert vault.seal("hunter2-hunter2", AAD) != token  # random nonce per seal


@pytest.mark.parametrize(
    "other_aad",
    [b"variable/var_0123456789ac/sealed_value", b"variable/var_0123456789ab/value", b""],
)
def test_value_moved_to_another_row_or_column_does_not_open(vault: Vault, other_aad: bytes) -> None:
    token = vault.seal("secret", AAD)
    with pytest.raises(VaultError, match="altered or moved"):
        vault.open(token, other_aad)


@pytest.mark.parametrize("position", [0, 11, 12, -1])
def test_altered_nonce_ciphertext_or_tag_does_not_open(vault: Vault, position: int) -> None:
    token = vault.seal("secret", AAD)
    with pytest.raises(VaultError) as caught:
        vault.open(_flip(token, position), AAD)
    assert caught.value.hint


@pytest.mark.parametrize(
    "token",
    ["", "plain text", "v2.abc.def", "v1..AAAA", "v1.{kid}.", "v1.{kid}.!!!!", "v1.{kid}.AAAA"],
)
def test_malformed_tokens_raise_vault_error(vault: Vault, token: str) -> None:
    with pytest.raises(VaultError):
        vault.open(token.format(kid=vault.current_key_id), AAD)


def test_value_under_an_unknown_key_names_it_and_hints(vault: Vault) -> None:
    other = Vault(KeyRing(MasterKey.generate()))
    token = other.seal("secret", AAD)
    with pytest.raises(VaultError, match=f"no master key with id {other.current_key_id}") as caught:
        vault.open(token, AAD)
    assert caught.value.hint and "master key" in caught.value.hint


def test_previous_keys_open_and_reseal_moves_to_the_current_key() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    token = Vault(KeyRing(old)).seal("secret", AAD)
    rotating = Vault(KeyRing(new, (old,)))
    assert rotating.open(token, AAD) == "secret"
    resealed = rotating.reseal(token, AAD)
    assert token_key_id(resealed) == new.key_id
    assert rotating.reseal(resealed, AAD) == resealed  # already current: unchanged
    assert Vault(KeyRing(new)).open(resealed, AAD) == "secret"
    with pytest.raises(VaultError):
        Vault(KeyRing(old)).open(resealed, AAD)


def test_derived_ciphers_differ_by_key_and_purpose(vault: Vault) -> None:
    kid = vault.current_key_id
    assert vault.derived_cipher(kid, "a") is vault.derived_cipher(kid, "a")
    sealed = vault.derived_cipher(kid, "a").encrypt(b"\0" * 12, b"data", None)
    with pytest.raises(InvalidTag):
        vault.derived_cipher(kid, "b").decrypt(b"\0" * 12, sealed, None)
    with pytest.raises(VaultError):
        vault.derived_cipher("0" * 16, "a")
