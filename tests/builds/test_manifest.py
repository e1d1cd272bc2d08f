"""Build manifests: the signed bytes are exactly what docs/protocol.md says, and ``verify``
refuses anything altered, malformed or signed by another key."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from octo_appliance.builds.manifest import (
    ManifestError,
    load_public_key,
    public_key_text,
    sign,
    signed_bytes,
    verify,
)

FIELDS = {
    "component": "octo-agent",
    "version": "0.1.0",
    "platform": "linux-x86_64",
    "size": 15172672,
    "sha256": "d3098742aff91a64e4d6023a83930aa702e819e20424a5b032c87a6a1c752931",
}


def test_the_signed_bytes_are_the_documented_canonical_form() -> None:
    expected = (
        b"octo-build-manifest/v1\n"
        b'{"component":"octo-agent","platform":"linux-x86_64","sha256":'
        b'"d3098742aff91a64e4d6023a83930aa702e819e20424a5b032c87a6a1c752931",'
        b'"size":15172672,"version":"0.1.0"}'
    )

    assert signed_bytes(FIELDS) == expected
    assert signed_bytes(FIELDS | {"signature": "x", "download": "/y"}) == expected


def test_a_signature_checks_out_with_any_ed25519_implementation() -> None:
    key = Ed25519PrivateKey.generate()
    manifest = sign(key, **FIELDS)

    raw = base64.b64decode(manifest.signature)
    key.public_key().verify(raw, signed_bytes(FIELDS))  # raises if not
    assert verify(manifest.to_json() | {"download": "/ignored"}, public_key_text(key)) == manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": FIELDS["size"] - 1}, "does not verify"),
        ({"sha256": "0" * 64}, "does not verify"),
        ({"version": "0.1.1"}, "does not verify"),
        ({"signature": base64.b64encode(b"x" * 64).decode()}, "does not verify"),
        ({"signature": "c2hvcnQ="}, "does not verify"),
        ({"signature": "not base64!"}, "not base64"),
        ({"size": "15172672"}, "not a byte count"),
        ({"size": True}, "not a byte count"),
        ({"sha256": "D" * 64}, "64 lowercase hex"),
        ({"platform": "linux x86_64"}, "not a short name"),
    ],
)
def test_verify_refuses_what_was_altered_or_malformed(change: dict, message: str) -> None:
    key = Ed25519PrivateKey.generate()
    manifest = sign(key, **FIELDS).to_json()

    with pytest.raises(ManifestError, match=message):
        verify(manifest | change, public_key_text(key))


def test_verify_refuses_a_missing_field_and_another_key() -> None:
    key = Ed25519PrivateKey.generate()
    manifest = sign(key, **FIELDS).to_json()
    other = public_key_text(Ed25519PrivateKey.generate())

    with pytest.raises(ManifestError, match="has no size"):
        verify({k: v for k, v in manifest.items() if k != "size"}, public_key_text(key))
    with pytest.raises(ManifestError, match="does not verify"):
        verify(manifest, other)


def test_a_public_key_is_32_bytes_of_base64() -> None:
    with pytest.raises(ManifestError, match="not 32"):
        load_public_key(base64.b64encode(b"k" * 31).decode())
    with pytest.raises(ManifestError, match="not base64"):
        load_public_key("%%%")
