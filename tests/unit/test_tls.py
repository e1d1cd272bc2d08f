"""The appliance certificate: generation, reuse, the encrypted key, operator certificates and
re-encryption when the master key rotates (all in-process, on real files)."""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from octo_appliance.certificate import (
    key_password,
    load_or_create_certificate,
    reencrypt_key,
    split_key_file,
)
from octo_appliance.config import Config, load_config
from octo_appliance.db.rekey import REKEY_HOOKS
from octo_appliance.exceptions import ConfigError, VaultError
from octo_appliance.vault.keys import KeyRing, MasterKey


def config_for(data_dir: Path, **flags: str) -> Config:
    return load_config({"data_dir": str(data_dir), **flags}, environ={})


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing(MasterKey.generate())


def test_first_call_generates_a_self_signed_certificate_for_local_names(
    tmp_path: Path, ring: KeyRing
) -> None:
    cert = load_or_create_certificate(config_for(tmp_path), ring)
    assert cert.created and cert.generated
    parsed = x509.load_pem_x509_certificate(cert.cert_file.read_bytes())
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    ips = sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips and ipaddress.ip_address("::1") in ips
    assert isinstance(parsed.public_key(), ec.EllipticCurvePublicKey)
    assert (parsed.not_valid_after_utc - parsed.not_valid_before_utc).days > 3000
    der = parsed.public_bytes(serialization.Encoding.DER)
    assert cert.thumbprint_sha256_hex == hashlib.sha256(der).hexdigest()


def test_the_key_is_encrypted_under_the_master_key_and_ssl_loads_it(
    tmp_path: Path, ring: KeyRing
) -> None:
    cert = load_or_create_certificate(config_for(tmp_path), ring)
    assert b"ENCRYPTED PRIVATE KEY" in cert.key_file.read_bytes()
    assert cert.key_file.stat().st_mode & 0o777 == 0o600
    assert cert.key_password == key_password(ring.current)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_file, cert.key_file, password=cert.key_password)
    with pytest.raises(ssl.SSLError):
        context.load_cert_chain(cert.cert_file, cert.key_file, password="wrong")
    assert b"BEGIN PRIVATE KEY" in cert.private_key_pem()


def test_later_calls_reuse_the_certificate(tmp_path: Path, ring: KeyRing) -> None:
    first = load_or_create_certificate(config_for(tmp_path), ring)
    again = load_or_create_certificate(config_for(tmp_path), ring)
    assert not again.created
    assert again.thumbprint_sha256_hex == first.thumbprint_sha256_hex


def test_another_master_key_cannot_open_the_key(tmp_path: Path, ring: KeyRing) -> None:
    load_or_create_certificate(config_for(tmp_path), ring)
    with pytest.raises(VaultError, match="does not decrypt") as caught:
        load_or_create_certificate(config_for(tmp_path), KeyRing(MasterKey.generate()))
    assert caught.value.hint


def test_half_a_pair_is_an_error_not_a_silent_new_identity(tmp_path: Path, ring: KeyRing) -> None:
    cert = load_or_create_certificate(config_for(tmp_path), ring)
    cert.key_file.unlink()
    with pytest.raises(VaultError, match=r"tls\.key is missing"):
        load_or_create_certificate(config_for(tmp_path), ring)


def test_a_lost_certificate_comes_back_from_the_key_file_unchanged(
    tmp_path: Path, ring: KeyRing
) -> None:
    cert = load_or_create_certificate(config_for(tmp_path), ring)
    cert.cert_file.unlink()
    again = load_or_create_certificate(config_for(tmp_path), ring)
    assert not again.created
    assert again.thumbprint_sha256_hex == cert.thumbprint_sha256_hex


def test_a_key_file_from_before_the_embedded_certificate_still_needs_its_certificate(
    tmp_path: Path, ring: KeyRing
) -> None:
    cert = load_or_create_certificate(config_for(tmp_path), ring)
    key_pem, _ = split_key_file(cert.key_file.read_bytes())
    cert.key_file.write_bytes(key_pem)  # the layout generated before
    assert load_or_create_certificate(config_for(tmp_path), ring) == replace(cert, created=False)
    cert.cert_file.unlink()
    with pytest.raises(VaultError, match=r"tls\.crt is missing"):
        load_or_create_certificate(config_for(tmp_path), ring)


def test_rekey_hook_reencrypts_under_the_new_key_and_is_idempotent(
    tmp_path: Path, ring: KeyRing
) -> None:
    assert reencrypt_key in REKEY_HOOKS
    first = load_or_create_certificate(config_for(tmp_path), ring)
    new_ring = KeyRing(MasterKey.generate())
    reencrypt_key(ring, new_ring, tmp_path)
    reencrypt_key(ring, new_ring, tmp_path)  # a resumed rotation runs it again
    after = load_or_create_certificate(config_for(tmp_path), new_ring)
    assert after.thumbprint_sha256_hex == first.thumbprint_sha256_hex
    assert after.key_password == key_password(new_ring.current)
    with pytest.raises(VaultError):
        load_or_create_certificate(config_for(tmp_path), ring)


def test_a_start_mid_rotation_moves_the_key_to_the_current_master_key(
    tmp_path: Path, ring: KeyRing
) -> None:
    load_or_create_certificate(config_for(tmp_path), ring)
    rotating = KeyRing(MasterKey.generate(), (ring.current,))
    cert = load_or_create_certificate(config_for(tmp_path), rotating)
    assert cert.key_password == key_password(rotating.current)
    load_or_create_certificate(config_for(tmp_path), KeyRing(rotating.current))


def _operator_pair(directory: Path, *, encrypted: bool = False) -> tuple[Path, Path]:
    """An operator's certificate: here, one generated by the appliance code in another dir."""
    directory.mkdir()
    source = load_or_create_certificate(config_for(directory), KeyRing(MasterKey.generate()))
    key = serialization.load_pem_private_key(source.private_key_pem(), None)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(b"pw") if encrypted else serialization.NoEncryption()
    )
    key_path = directory / "operator.key"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return source.cert_file, key_path


def test_operator_certificate_is_used_as_given(tmp_path: Path, ring: KeyRing) -> None:
    cert_path, key_path = _operator_pair(tmp_path / "op")
    data_dir = tmp_path / "data"
    cert = load_or_create_certificate(
        config_for(data_dir, tls_cert=str(cert_path), tls_key=str(key_path)), ring
    )
    assert not cert.generated and cert.key_password is None
    assert cert.cert_file == cert_path and cert.key_file == key_path
    assert not (data_dir / "tls.crt").exists()


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("only-cert", "must be given together"),
        ("wrong-key", "is not the private key of"),
        ("encrypted-key", "is encrypted"),
        ("not-pem", "holds no PEM certificate"),
        ("missing", "cannot read"),
    ],
)
def test_operator_certificate_problems_are_config_errors(
    tmp_path: Path, ring: KeyRing, problem: str, message: str
) -> None:
    cert_path, key_path = _operator_pair(tmp_path / "op", encrypted=problem == "encrypted-key")
    flags = {"tls_cert": str(cert_path), "tls_key": str(key_path)}
    if problem == "only-cert":
        del flags["tls_key"]
    elif problem == "wrong-key":
        _, other_key = _operator_pair(tmp_path / "other")
        flags["tls_key"] = str(other_key)
    elif problem == "not-pem":
        cert_path.write_text("hello")
    elif problem == "missing":
        flags["tls_cert"] = str(tmp_path / "absent.crt")
    with pytest.raises(ConfigError, match=message) as caught:
        load_or_create_certificate(config_for(tmp_path / "data", **flags), ring)
    assert caught.value.hint
