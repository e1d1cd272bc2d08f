"""The ssh transport's pure settings: fingerprints both ways, the address in a uri, and
credentials that never show in a repr."""

from __future__ import annotations

import base64
import hashlib

import pytest

from octo_appliance.transports.ssh.settings import (
    SettingError,
    SshCredentials,
    SshTarget,
    openssh_fingerprint,
    parse_fingerprint,
    parse_ssh_uri,
    ssh_uri,
)

DIGEST = hashlib.sha256(b"a host key").digest()
OPENSSH = "SHA256:" + base64.b64encode(DIGEST).decode().rstrip("=")


def test_fingerprints_read_as_openssh_prints_them_or_as_hex() -> None:
    assert parse_fingerprint(OPENSSH) == DIGEST.hex()
    assert parse_fingerprint(f"  {DIGEST.hex().upper()} ") == DIGEST.hex()
    assert openssh_fingerprint(DIGEST.hex()) == OPENSSH
    assert openssh_fingerprint("") == ""


@pytest.mark.parametrize("bad", ["", "SHA256:", "MD5:ab:cd", "SHA256:" + "A" * 42, "ab" * 31])
def test_a_malformed_fingerprint_names_the_field(bad: str) -> None:
    with pytest.raises(SettingError) as raised:
        parse_fingerprint(bad)
    assert raised.value.field == "host_key_fingerprint"


def test_the_address_lives_in_the_uri() -> None:
    assert parse_ssh_uri(ssh_uri("deploy", "10.0.0.7", 2222)) == ("deploy", "10.0.0.7", 2222)
    assert parse_ssh_uri(ssh_uri("deploy", "::1", 22)) == ("deploy", "::1", 22)
    with pytest.raises(SettingError):
        parse_ssh_uri("https://host:10933")


def test_credentials_never_show_in_a_repr() -> None:
    creds = SshCredentials(private_key="KEYBODY", passphrase="PASSPHRASE", password="")
    target = SshTarget("tgt_1", "web", "h", 22, "u", credentials=creds)
    for text in (repr(creds), repr(target), str(target)):
        assert "KEYBODY" not in text and "PASSPHRASE" not in text
    assert creds.kind == "private_key"
    assert SshCredentials.from_json(creds.to_json()) == creds
    assert SshCredentials(password="pw").kind == "password"
