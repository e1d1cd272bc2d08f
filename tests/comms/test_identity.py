"""Identities: generation, thumbprints, loading from files (the appliance reuses its own)."""

from __future__ import annotations

import datetime
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from octo_appliance.comms import (
    CommsSettings,
    IdentityError,
    TrustStore,
    connect,
    generate_identity,
    load_identity,
    normalize_thumbprint,
    serve,
    thumbprint_of_der,
    thumbprint_of_pem,
)
from octo_appliance.comms.identity import Identity
from octo_appliance.exceptions import OctoError

from .conftest import AGENT_HELLO, APPLIANCE_HELLO, Identities


def test_generated_identity_is_self_signed_and_usable_both_ways() -> None:
    identity = generate_identity("web01", ["web01.example", "10.0.0.5"])
    cert = x509.load_pem_x509_certificate(identity.cert_pem)

    assert cert.issuer == cert.subject
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["web01.example"]


def test_thumbprint_is_lowercase_hex_sha256_of_the_der() -> None:
    identity = generate_identity("x")
    der = x509.load_pem_x509_certificate(identity.cert_pem).public_bytes(serialization.Encoding.DER)

    assert identity.thumbprint == hashlib.sha256(der).hexdigest()
    assert thumbprint_of_der(der) == identity.thumbprint
    assert thumbprint_of_pem(identity.cert_pem.decode()) == identity.thumbprint


def test_normalize_thumbprint_accepts_common_spellings() -> None:
    plain = "ab" * 32
    colons = ":".join(["AB"] * 32)

    assert normalize_thumbprint(colons) == plain
    assert normalize_thumbprint(f" {plain.upper()} ") == plain
    with pytest.raises(IdentityError, match="not a SHA-256 certificate thumbprint"):
        normalize_thumbprint("abc")


def test_private_key_is_not_in_repr() -> None:
    identity = generate_identity("x")

    assert "PRIVATE" not in repr(identity)


def test_load_identity_with_an_encrypted_key(tmp_path: Path) -> None:
    identity = generate_identity("appliance")
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    identity.save(cert_file, key_file, password="s3cret")

    loaded = load_identity(cert_file, key_file, "s3cret")

    assert loaded.thumbprint == identity.thumbprint
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in key_file.read_bytes()


@pytest.mark.parametrize(
    ("password", "message"),
    [
        (None, "is encrypted and no password was given"),
        ("wrong", "or its password is wrong"),
    ],
)
def test_load_identity_explains_a_bad_password(
    tmp_path: Path, password: str | None, message: str
) -> None:
    generate_identity("a").save(tmp_path / "c", tmp_path / "k", password="right")

    with pytest.raises(IdentityError, match=message) as failed:
        load_identity(tmp_path / "c", tmp_path / "k", password)

    assert isinstance(failed.value, OctoError)
    assert failed.value.hint
    assert "right" not in str(failed.value)


def test_load_identity_refuses_a_key_of_another_certificate(tmp_path: Path) -> None:
    generate_identity("a").save(tmp_path / "a.crt", tmp_path / "a.key")
    generate_identity("b").save(tmp_path / "b.crt", tmp_path / "b.key")

    with pytest.raises(IdentityError, match="is not the private key of"):
        load_identity(tmp_path / "a.crt", tmp_path / "b.key")
    with pytest.raises(IdentityError, match="cannot read the certificate"):
        load_identity(tmp_path / "missing.crt", tmp_path / "a.key")


def _server_auth_only() -> Identity:
    """Like a certificate made only for HTTPS (serverAuth, no clientAuth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "https-only")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


async def test_a_certificate_without_client_auth_is_refused_up_front(ids: Identities) -> None:
    """OpenSSL on the peer would reject it as a client certificate with a vague alert."""
    with pytest.raises(IdentityError, match="lacks clientAuth"):
        await connect(
            "127.0.0.1", 1, _server_auth_only(), ids.agent.thumbprint, hello=APPLIANCE_HELLO
        )


async def _agent_dials(
    appliance: Identity, thumbprint: str, ids: Identities, settings: CommsSettings
) -> None:
    """An agent dials a listener that serves ``appliance``, pinning ``thumbprint``."""
    server = await serve(
        "127.0.0.1",
        0,
        appliance,
        TrustStore([ids.agent.cert_pem]),
        hello=APPLIANCE_HELLO,
        settings=settings,
    )
    try:
        conn = await connect(
            "127.0.0.1",
            server.port,
            ids.agent,
            thumbprint,
            hello=AGENT_HELLO,
            settings=settings,
        )
        assert conn.peer_thumbprint == thumbprint
        conn.close()
        await conn.wait_closed()
    finally:
        await server.close()


async def test_an_identity_loaded_from_files_serves_and_dials(
    ids: Identities, tmp_path: Path, settings: CommsSettings
) -> None:
    """The appliance passes (cert_file, key_file, password) of its own certificate."""
    ids.appliance.save(tmp_path / "tls.crt", tmp_path / "tls.key", password="pw")
    appliance = load_identity(tmp_path / "tls.crt", tmp_path / "tls.key", "pw")
    await _agent_dials(appliance, ids.appliance.thumbprint, ids, settings)


def test_trust_store_versions_change_only_on_real_changes() -> None:
    a, b = generate_identity("a"), generate_identity("b")
    store = TrustStore([a.cert_pem])
    start = store.version

    assert store.add(a.cert_pem) == a.thumbprint
    assert store.version == start
    store.add(b.cert_pem.decode())
    assert store.version == start + 1
    assert store.contains(b.thumbprint.upper())
    assert not store.remove("cd" * 32)
    assert store.remove(b.thumbprint)
    assert store.version == start + 2
    store.replace([a.cert_pem])
    assert store.version == start + 2
    assert store.snapshot().cert_pems == (a.cert_pem,)


async def test_the_appliance_https_certificate_serves_the_polling_listener(
    ids: Identities, tmp_path: Path, settings: CommsSettings
) -> None:
    """The real thing: octo_appliance.certificate's generated certificate and encrypted key."""
    from octo_appliance.certificate import load_or_create_certificate
    from octo_appliance.config import load_config
    from octo_appliance.vault.keys import KeyRing, MasterKey

    config = load_config({"data_dir": str(tmp_path)}, environ={})
    https = load_or_create_certificate(config, KeyRing(MasterKey.generate()))
    appliance = load_identity(https.cert_file, https.key_file, https.key_password)
    await _agent_dials(appliance, https.thumbprint_sha256_hex, ids, settings)
