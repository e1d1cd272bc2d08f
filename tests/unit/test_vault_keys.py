"""The master key, the key ring, the key file and derived secrets."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from octo_appliance.exceptions import VaultError
from octo_appliance.vault.keys import (
    KEY_FILE_NAME,
    KeyRing,
    MasterKey,
    derive_secret,
    key_from_env,
    load_keyring,
    read_keyring_file,
    write_keyring,
)


def test_key_text_round_trip_and_id_reveal_nothing() -> None:
    key = MasterKey.generate()
    assert MasterKey.from_text(key.to_text() + "\n") == key
    assert len(key.key_id) == 16
    assert key.to_text() not in repr(key)


@pytest.mark.parametrize("text", ["not base64!", "", "AAAA"])
def test_bad_key_text_raises_with_hint(text: str) -> None:
    with pytest.raises(VaultError) as caught:
        MasterKey.from_text(text)
    assert caught.value.hint


def test_key_file_is_written_atomically_with_mode_0600(tmp_path: Path) -> None:
    ring = KeyRing(MasterKey.generate(), (MasterKey.generate(),))
    path = tmp_path / KEY_FILE_NAME
    write_keyring(path, ring)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_keyring_file(path) == ring
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE_NAME]  # no temp left
    write_keyring(path, KeyRing(ring.current))
    assert json.loads(path.read_text()) == {"current": ring.current.to_text(), "previous": []}


def test_load_creates_once_then_reuses(tmp_path: Path) -> None:
    ring, created = load_keyring(tmp_path, create=True, environ={})
    assert created
    again, created_again = load_keyring(tmp_path, create=True, environ={})
    assert (again, created_again) == (ring, False)


def test_missing_key_file_raises_with_hint(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="no master key") as caught:
        load_keyring(tmp_path, environ={})
    assert caught.value.hint


@pytest.mark.parametrize(
    "content", ["", "{}", "[]", '{"current": "xx"}', '{"current": "%s", "previous": "abc"}']
)
def test_damaged_key_file_raises_with_hint(tmp_path: Path, content: str) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_text(content.replace("%s", MasterKey.generate().to_text()))
    with pytest.raises(VaultError, match="not a valid master key file") as caught:
        load_keyring(tmp_path, environ={})
    assert caught.value.hint


def test_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    load_keyring(tmp_path, create=True, environ={})
    env_key = MasterKey.generate()
    environ = {"OCTO_MASTER_KEY": env_key.to_text()}
    ring, created = load_keyring(tmp_path, environ=environ)
    assert ring == KeyRing(env_key) and not created
    assert key_from_env(environ) and not key_from_env({})


def test_ring_finds_keys_by_id() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    ring = KeyRing(new, (old,))
    assert ring.rotating and not KeyRing(new).rotating
    assert ring.find(old.key_id) is old
    assert ring.keys == (new, old)
    with pytest.raises(VaultError):
        KeyRing(new).find(old.key_id)


def test_derive_secret_is_stable_and_separates_purposes_and_keys() -> None:
    key, other = MasterKey(b"a" * 32), MasterKey(b"b" * 32)
    secret = derive_secret(key, "tls-key-password")
    assert len(secret) == 32
    assert derive_secret(key, "tls-key-password") == secret
    assert derive_secret(key, "file-key-wrap") != secret
    assert derive_secret(other, "tls-key-password") != secret
    assert key.material not in secret
    with pytest.raises(ValueError):
        derive_secret(key, "")
