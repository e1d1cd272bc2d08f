"""The appliance's TLS certificate: generated self-signed on first start, or the operator's.

The generated pair lives in the data dir (or ``shared_dir``): ``tls.crt`` (plain PEM, it is
public) and ``tls.key`` (PKCS#8 PEM encrypted under a password derived from the current master
key, mode 0600, followed by a copy of the certificate), so a copy of the data dir without the
master key does not give away the appliance's identity. The copy makes ``tls.key`` the one
file that creates a pair, so nodes starting at once on one directory agree on it. The
thumbprint agents pin is SHA-256 of the certificate's DER bytes, written as 64 lowercase hex
digits without separators; compare thumbprints case-insensitively.

An operator certificate (settings ``tls_cert`` + ``tls_key``) is used as given; its key must
be unencrypted PEM (protect it with file permissions), because there is nowhere to keep its
password that is safer than the file itself.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from octo_appliance.comms.identity import generate_identity
from octo_appliance.config import Config
from octo_appliance.db.rekey import REKEY_HOOKS
from octo_appliance.exceptions import ConfigError, VaultError
from octo_appliance.filesystem.durable import create_once, write_atomic
from octo_appliance.vault.keys import KeyRing, MasterKey, derive_secret

CERT_FILE_NAME = "tls.crt"
KEY_FILE_NAME = "tls.key"
#: HKDF ``info`` for the key-file password; changing it orphans every existing key file.
KEY_PASSWORD_PURPOSE = "tls-key-password"
VALIDITY_DAYS = 3650
ENCRYPTED_PEM_MARKER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
CERT_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class ServerCertificate:
    """What a TLS listener needs: the files, the key's password (None: unencrypted), the pin."""

    cert_file: Path
    key_file: Path
    key_password: str | None = field(repr=False)
    thumbprint_sha256_hex: str
    #: True when this start generated the pair (first start on an empty data dir)
    created: bool = False
    #: True for the generated self-signed pair, False for the operator's tls_cert/tls_key
    generated: bool = True

    def private_key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM, for libraries that take no password."""
        key_pem, _ = split_key_file(self.key_file.read_bytes())
        key = _load_key(key_pem, self.key_password, str(self.key_file))
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def key_password(master_key: MasterKey) -> str:
    """The key-file password for ``master_key``, as hex text (:mod:`ssl` takes text)."""
    return derive_secret(master_key, KEY_PASSWORD_PURPOSE).hex()


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as 64 lowercase hex digits."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_or_create_certificate(config: Config, keyring: KeyRing) -> ServerCertificate:
    """The operator's certificate when configured, else the generated one (made if missing)."""
    cert_setting, key_setting = config.tls_cert, config.tls_key
    if cert_setting or key_setting:
        if not (cert_setting and key_setting):
            raise ConfigError(
                "tls_cert and tls_key must be given together",
                hint="pass both --tls-cert and --tls-key, or neither to use the generated one",
            )
        return _operator_certificate(Path(cert_setting), Path(key_setting))
    return _generated_certificate(config.shared_path, keyring)


def reencrypt_key(old_ring: KeyRing, new_ring: KeyRing, data_dir: Path) -> None:
    """Master-key rotation hook: re-encrypt the generated key under the new current key.

    Idempotent (a resumed rotation may find the file already under the new key) and atomic.
    A plain key at that path (an operator's tls_key kept in the data dir) is left alone.
    """
    key_path = data_dir / KEY_FILE_NAME
    if not key_path.is_file() or ENCRYPTED_PEM_MARKER not in key_path.read_bytes():
        return
    all_keys = (*old_ring.keys, *new_ring.keys)
    key, _ = _open_with_any(key_path, all_keys)
    _, embedded_cert = split_key_file(key_path.read_bytes())
    _write_private(key_path, _encrypted_pem(key, new_ring.current) + (embedded_cert or b""))


def _generated_certificate(data_dir: Path, keyring: KeyRing) -> ServerCertificate:
    cert_path, key_path = data_dir / CERT_FILE_NAME, data_dir / KEY_FILE_NAME
    created = False
    if not key_path.exists():
        if cert_path.exists():
            raise _half_a_pair(cert_path, key_path)
        created = _create_pair(key_path, keyring.current)
    _, embedded_cert = split_key_file(key_path.read_bytes())
    if not cert_path.exists():
        if embedded_cert is None:
            raise _half_a_pair(key_path, cert_path)
        # Every node sharing the directory writes the same bytes: the certificate in tls.key.
        write_atomic(cert_path, embedded_cert, mode=0o644)
    cert = _load_cert(cert_path)
    key, opened_with = _open_with_any(key_path, keyring.keys)
    if not _matches(cert, key):
        raise VaultError(
            f"{key_path} does not belong to {cert_path}",
            hint="restore both files from the same backup, or delete both to generate a new "
            "certificate (agents then have to trust the new thumbprint)",
        )
    if opened_with != keyring.current:
        # A rotation stopped before this file was re-encrypted: finish the job now.
        _write_private(key_path, _encrypted_pem(key, keyring.current) + (embedded_cert or b""))
    return ServerCertificate(
        cert_file=cert_path,
        key_file=key_path,
        key_password=key_password(keyring.current),
        thumbprint_sha256_hex=thumbprint(cert),
        created=created,
    )


def _create_pair(key_path: Path, master_key: MasterKey) -> bool:
    """Make a new pair unless another node sharing the directory made one first.

    The key file is the pair's one point of creation: it holds the encrypted key followed by
    the certificate, and is published only if absent (:func:`create_once`), so of several nodes
    starting at once on an empty ``shared_dir`` exactly one pair wins and every node writes
    ``tls.crt`` from it. True when this call's pair won.
    """
    key, cert = _self_signed()
    data = _encrypted_pem(key, master_key) + cert.public_bytes(serialization.Encoding.PEM)
    return create_once(key_path, data, mode=0o600) == data


def split_key_file(data: bytes) -> tuple[bytes, bytes | None]:
    """The key PEM of ``tls.key`` and the certificate PEM after it (None in files generated
    before the certificate was kept there)."""
    start = data.find(CERT_PEM_MARKER)
    if start < 0:
        return data, None
    return data[:start], data[start:]


def _half_a_pair(present: Path, missing: Path) -> VaultError:
    return VaultError(
        f"{present} exists but {missing} is missing",
        hint="restore the missing file from a backup, or delete the other one to generate a "
        "new certificate (agents then have to trust the new thumbprint)",
    )


def _operator_certificate(cert_path: Path, key_path: Path) -> ServerCertificate:
    cert = _load_cert(cert_path)
    try:
        key_bytes = key_path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read tls_key {key_path}: {exc.strerror}",
            hint="check the path and that the service user may read it",
        ) from None
    key = _load_key(key_bytes, None, str(key_path))
    if not _matches(cert, key):
        raise ConfigError(
            f"tls_key {key_path} is not the private key of tls_cert {cert_path}",
            hint="give the key that was used to request this certificate",
        )
    return ServerCertificate(
        cert_file=cert_path,
        key_file=key_path,
        key_password=None,
        thumbprint_sha256_hex=thumbprint(cert),
        generated=False,
    )


def _self_signed() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new pair for this host, made like every comms identity (usable as server and client,
    so the same certificate serves HTTPS, the polling listener and dialling agents)."""
    hostname = socket.gethostname() or "localhost"
    sans = ["localhost", "127.0.0.1", "::1"] + ([hostname] if hostname != "localhost" else [])
    identity = generate_identity(hostname, sans, valid_days=VALIDITY_DAYS)
    key = serialization.load_pem_private_key(identity.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key, x509.load_pem_x509_certificate(identity.cert_pem)


def _load_cert(path: Path) -> x509.Certificate:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"cannot read the certificate {path}: {exc.strerror}",
            hint="check the path and that the service user may read it",
        ) from None
    except ValueError:
        raise ConfigError(
            f"{path} holds no PEM certificate",
            hint="give a PEM file starting with -----BEGIN CERTIFICATE-----",
        ) from None
    return certs[0]


def _load_key(data: bytes, password: str | None, source: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(
            data, password=password.encode() if password else None
        )
    except TypeError:
        raise ConfigError(
            f"the private key {source} is encrypted",
            hint="give an unencrypted PEM key and protect it with file permissions (0600)",
        ) from None
    except ValueError:
        raise ConfigError(
            f"{source} is not a PEM private key (or its password is wrong)",
            hint="give a PEM file starting with -----BEGIN PRIVATE KEY-----",
        ) from None


def _open_with_any(
    key_path: Path, keys: tuple[MasterKey, ...]
) -> tuple[PrivateKeyTypes, MasterKey]:
    """The decrypted key and the master key whose password opened it."""
    data, _ = split_key_file(key_path.read_bytes())
    for master_key in keys:
        try:
            key = serialization.load_pem_private_key(data, password=_password_bytes(master_key))
        except (ValueError, TypeError):
            continue
        return key, master_key
    raise VaultError(
        f"{key_path} does not decrypt with the loaded master key",
        hint="start with the master key this data dir was created with (OCTO_MASTER_KEY or "
        "master_key_file), or delete tls.crt and tls.key to generate a new certificate",
    )


def _password_bytes(master_key: MasterKey) -> bytes:
    return key_password(master_key).encode()


def _matches(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki))


def _encrypted_pem(key: PrivateKeyTypes, master_key: MasterKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(_password_bytes(master_key)),
    )


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)


if reencrypt_key not in REKEY_HOOKS:
    REKEY_HOOKS.append(reencrypt_key)
