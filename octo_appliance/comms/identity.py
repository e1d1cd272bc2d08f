"""Key pairs, self-signed certificates and SHA-256 thumbprints for both ends of the wire.

A thumbprint is SHA-256 of the certificate's DER bytes as 64 lowercase hex digits (the form
``octo_appliance.certificate`` uses too). Identities are EC P-256: fast handshakes for 1,000 agents.
A comms certificate is used as a TLS server certificate *and* as a TLS client certificate
(either side may dial), so a generated one carries both extended key usages, and
:func:`check_usage` refuses one that OpenSSL would reject in a role, before a peer does.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from octo_appliance.comms.errors import IdentityError

VALIDITY_DAYS = 3650
_THUMBPRINT = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Identity:
    """A certificate (PEM) and its private key (unencrypted PKCS#8 PEM, kept in memory)."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def thumbprint(self) -> str:
        return thumbprint_of_pem(self.cert_pem)

    def load_into(self, context: ssl.SSLContext) -> None:
        """Load this identity into an SSL context.

        :mod:`ssl` only reads files, so the key goes to a private temporary directory,
        encrypted under a one-time random password, and is deleted at once: a crash here
        leaves nothing usable on disk.
        """
        password = secrets.token_hex(16)
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        sealed = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
        with tempfile.TemporaryDirectory(prefix="octo-comms-") as tmp:
            cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert_file.write_bytes(self.cert_pem)
            _write_private(key_file, sealed)
            context.load_cert_chain(cert_file, key_file, password=password)

    def save(self, cert_file: Path, key_file: Path, password: str | None = None) -> None:
        """Write the pair (key mode 0600, encrypted when ``password`` is given)."""
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        _write_private(key_file, pem)
        cert_file.write_bytes(self.cert_pem)


def generate_identity(
    common_name: str, sans: Iterable[str] = (), *, valid_days: int = VALIDITY_DAYS
) -> Identity:
    """A new EC P-256 key and a self-signed certificate usable as TLS server and client."""
    key = ec.generate_private_key(ec.SECP256R1())
    # A unique subject: OpenSSL looks trusted certificates up by subject, so two trusted
    # self-signed certificates with the same subject would be checked against each other's key.
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Octo Appliance"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, secrets.token_hex(8)),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    names = [_general_name(san) for san in sans]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return Identity(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def load_identity(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    password: str | None = None,
) -> Identity:
    """Read a PEM certificate and its (optionally encrypted) PEM key, and check they match."""
    cert_path, key_path = Path(cert_file), Path(key_file)
    cert_pem, key_bytes = _read(cert_path, "certificate"), _read(key_path, "private key")
    cert = _parse_cert(cert_pem, str(cert_path))
    try:
        key = serialization.load_pem_private_key(
            key_bytes, password=password.encode() if password else None
        )
    except TypeError:
        raise IdentityError(
            f"the private key {key_path} is encrypted and no password was given"
            if not password
            else f"the private key {key_path} is not encrypted, but a password was given",
            hint="pass the key's password, or none for an unencrypted key",
        ) from None
    except ValueError:
        raise IdentityError(
            f"{key_path} is not a PEM private key, or its password is wrong",
            hint="give the PEM key that belongs to the certificate, with its password",
        ) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise IdentityError(
            f"{key_path} is not the private key of {cert_path}",
            hint="give the key that was generated with this certificate",
        )
    plain = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Identity(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=plain)


def thumbprint_of_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def thumbprint_of_pem(pem: str | bytes) -> str:
    cert = _parse_cert(pem.encode() if isinstance(pem, str) else pem, "the certificate")
    return thumbprint_of_der(cert.public_bytes(serialization.Encoding.DER))


def normalize_thumbprint(value: str) -> str:
    """Lowercase hex without separators; anything but 64 hex digits is an error."""
    cleaned = re.sub(r"[\s:]", "", value).lower()
    if not _THUMBPRINT.fullmatch(cleaned):
        raise IdentityError(
            f"{value!r} is not a SHA-256 certificate thumbprint",
            hint="give 64 hex digits, as the peer's show-thumbprint command prints them",
        )
    return cleaned


def check_usage(identity: Identity, role: Literal["server", "client"]) -> None:
    """Refuse a certificate whose extended key usage forbids ``role`` (OpenSSL would)."""
    cert = _parse_cert(identity.cert_pem, "the certificate")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    wanted = (
        ExtendedKeyUsageOID.SERVER_AUTH if role == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    )
    if wanted not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
        purpose = "serverAuth" if role == "server" else "clientAuth"
        raise IdentityError(
            f"certificate {identity.thumbprint[:16]}… cannot act as a TLS {role}: its extended "
            f"key usage lacks {purpose}, so peers would refuse it",
            hint="use a certificate with both serverAuth and clientAuth (generate_identity makes "
            "one), or a separate comms certificate",
        )


def _general_name(san: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        return x509.DNSName(san)


def _parse_cert(pem: bytes, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificates(pem)[0]
    except ValueError:
        raise IdentityError(
            f"{source} holds no PEM certificate",
            hint="give a PEM file starting with -----BEGIN CERTIFICATE-----",
        ) from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IdentityError(
            f"cannot read the {what} {path}: {exc.strerror}",
            hint="check the path and that this service's user may read it",
        ) from None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, 0o600)
