"""The master key, the key ring, the key file and derived secrets."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from octo_appliance.exceptions import VaultError
from octo_appliance.vault import keys
from octo_appliance.vault.keys import (
    KEY_FILE_NAME,
    KeyRing,
    MasterKey,
    default_key_file,
    derive_secret,
    key_from_env,
    open_keyring,
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
    first = open_keyring(tmp_path, create=True, environ={})
    assert first.created
    again = open_keyring(tmp_path, create=True, environ={})
    assert (again.ring, again.created) == (first.ring, False)


def test_missing_key_file_raises_with_hint(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="no master key") as caught:
        open_keyring(tmp_path, environ={})
    assert caught.value.hint


@pytest.mark.parametrize(
    "content", ["", "{}", "[]", '{"current": "xx"}', '{"current": "%s", "previous": "abc"}']
)
def test_damaged_key_file_raises_with_hint(tmp_path: Path, content: str) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_text(content.replace("%s", MasterKey.generate().to_text()))
    with pytest.raises(VaultError, match="not a valid master key file") as caught:
        open_keyring(tmp_path, environ={})
    assert caught.value.hint


def test_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    open_keyring(tmp_path, create=True, environ={})
    env_key = MasterKey.generate()
    environ = {"OCTO_MASTER_KEY": env_key.to_text()}
    loaded = open_keyring(tmp_path, environ=environ)
    assert loaded.ring == KeyRing(env_key) and not loaded.created and loaded.path is None
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


def test_the_default_key_file_is_outside_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys.os, "geteuid", lambda: 0)
    assert default_key_file() == keys.SYSTEM_KEY_DIR / KEY_FILE_NAME
    monkeypatch.setattr(keys.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_key_file() == tmp_path / "xdg" / "octo-appliance" / KEY_FILE_NAME
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_key_file() == tmp_path / "home" / ".config" / "octo-appliance" / KEY_FILE_NAME


def test_a_first_start_creates_the_key_outside_the_data_dir_0700_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    loaded = open_keyring(data_dir, create=True, environ={})
    assert loaded.created and loaded.path == default_key_file()
    assert not (data_dir / KEY_FILE_NAME).exists()
    assert stat.S_IMODE(loaded.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(loaded.path.parent.stat().st_mode) == 0o700
    again = open_keyring(data_dir, create=True, environ={})
    assert (again.ring, again.created) == (loaded.ring, False)


def test_a_key_in_the_data_dir_is_moved_out_at_start_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    ring = KeyRing(MasterKey.generate())
    write_keyring(data_dir / KEY_FILE_NAME, ring)
    target = tmp_path / "keys" / KEY_FILE_NAME
    # commands run beside a server read it where it is until the server moves it
    beside = open_keyring(data_dir, str(target), environ={})
    assert (beside.ring, beside.path) == (ring, data_dir / KEY_FILE_NAME)
    with caplog.at_level("WARNING"):
        moved = open_keyring(data_dir, str(target), create=True, environ={})
    assert (moved.ring, moved.path, moved.created) == (ring, target, False)
    assert moved.moved_from == data_dir / KEY_FILE_NAME
    assert not (data_dir / KEY_FILE_NAME).exists()
    assert read_keyring_file(target) == ring
    assert f"from {data_dir / KEY_FILE_NAME} to {target}" in caplog.text
    assert ring.current.to_text() not in caplog.text


def test_two_copies_equal_are_the_trace_of_a_move_two_different_keys_stop_the_start(
    tmp_path: Path,
) -> None:
    data_dir, target = tmp_path / "data", tmp_path / "keys" / KEY_FILE_NAME
    ring = KeyRing(MasterKey.generate())
    write_keyring(data_dir / KEY_FILE_NAME, ring)
    write_keyring(target, ring)
    assert open_keyring(data_dir, str(target), create=True, environ={}).ring == ring
    assert not (data_dir / KEY_FILE_NAME).exists()
    write_keyring(data_dir / KEY_FILE_NAME, KeyRing(MasterKey.generate()))
    with pytest.raises(VaultError, match="two different master keys") as caught:
        open_keyring(data_dir, str(target), create=True, environ={})
    assert caught.value.hint and "delete the other" in caught.value.hint
    assert read_keyring_file(target) == ring


def test_a_key_file_may_hold_just_the_base64_key(tmp_path: Path) -> None:
    key = MasterKey.generate()
    path = tmp_path / "secret"
    path.write_text(key.to_text() + "\n")
    assert read_keyring_file(path) == KeyRing(key)
    path.write_text("not-a-key")
    with pytest.raises(VaultError, match="not a valid master key file") as caught:
        read_keyring_file(path)
    assert "not-a-key" not in str(caught.value.message)
