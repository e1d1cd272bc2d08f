"""Signed build manifests: what a download is (component, version, platform, size, SHA-256),
signed with the appliance's Ed25519 key so a target can check a build before it runs it.

The signature is Ed25519 over :func:`signed_bytes`: the ASCII prefix ``octo-build-manifest/v1``
and a newline, then the JSON object of the five signed fields with sorted keys, no whitespace
(``separators=(",", ":")``) and ``ensure_ascii``. The prefix keeps a manifest signature from
ever being valid for anything else the key might sign. docs/protocol.md states the same, so a
client in another language can check it. The agent imports this module (and nothing of the
server) to verify what it fetched.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from octo_appliance.exceptions import OctoError

#: what the signed bytes start with: a manifest signature signs nothing else
DOMAIN = b"octo-build-manifest/v1\n"
#: the fields the signature covers, in the order documentation lists them
SIGNED_FIELDS = ("component", "version", "platform", "size", "sha256")
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class ManifestError(OctoError):
    """A build manifest is malformed, or its signature does not verify."""


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WORD = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


@dataclass(frozen=True)
class Manifest:
    """One signed build: the fields of ``GET /api/v1/agent`` (and ``/runner``)."""

    #: what was built: ``octo-agent`` or ``octo-runner``
    component: str
    #: the version stamped into the build (what the agent reports once it runs)
    version: str
    #: where it runs: ``linux-x86_64``, or ``any`` for the pure-Python runner
    platform: str
    #: bytes, and their SHA-256 (64 lowercase hex digits)
    size: int
    sha256: str
    #: base64 Ed25519 signature over :func:`signed_bytes` of the five fields above
    signature: str = ""

    def signed_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SIGNED_FIELDS}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def signed_bytes(fields: Mapping[str, Any]) -> bytes:
    """The canonical serialisation the signature is made over (see the module doc)."""
    body = {name: fields[name] for name in SIGNED_FIELDS}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return DOMAIN + text.encode("ascii")


def sign(
    private_key: Ed25519PrivateKey,
    *,
    component: str,
    version: str,
    platform: str,
    size: int,
    sha256: str,
) -> Manifest:
    """The manifest of one build, signed with ``private_key``."""
    unsigned = _checked(
        {
            "component": component,
            "version": version,
            "platform": platform,
            "size": size,
            "sha256": sha256,
        }
    )
    signature = private_key.sign(signed_bytes(unsigned.signed_fields()))
    return Manifest(**unsigned.signed_fields(), signature=base64.b64encode(signature).decode())


def public_key_text(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The public key as base64 of its 32 raw bytes (how registration hands it out)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(public.public_bytes_raw()).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    """The key :func:`public_key_text` wrote; :class:`ManifestError` for anything else."""
    raw = _b64(text, "the signing public key")
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ManifestError(
            f"the signing public key is {len(raw)} bytes, not {PUBLIC_KEY_BYTES}",
            hint="register the agent again to receive the appliance's signing key",
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(manifest: Mapping[str, Any] | Manifest, public_key: str | Ed25519PublicKey) -> Manifest:
    """The manifest, once its fields are well-formed and its signature verifies with
    ``public_key`` (base64 text or a key); :class:`ManifestError` otherwise."""
    fields = manifest.to_json() if isinstance(manifest, Manifest) else dict(manifest)
    checked = _checked(fields)
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    signature = _b64(fields.get("signature"), "the manifest's signature")
    if len(signature) != SIGNATURE_BYTES:
        raise _bad_signature(checked)
    try:
        key.verify(signature, signed_bytes(checked.signed_fields()))
    except InvalidSignature:
        raise _bad_signature(checked) from None
    return Manifest(**checked.signed_fields(), signature=str(fields["signature"]))


def _checked(fields: Mapping[str, Any]) -> Manifest:
    missing = [name for name in SIGNED_FIELDS if name not in fields]
    if missing:
        raise ManifestError(
            f"the manifest has no {', '.join(missing)}",
            hint="fetch it again from the appliance's /api/v1 manifest endpoint",
        )
    problems = [
        f"{name} {fields[name]!r} is not a short name"
        for name in ("component", "version", "platform")
        if not isinstance(fields[name], str) or not _WORD.match(fields[name])
    ]
    size = fields["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        problems.append(f"size {size!r} is not a byte count")
    if not isinstance(fields["sha256"], str) or not _SHA256.match(fields["sha256"]):
        problems.append("sha256 is not 64 lowercase hex digits")
    if problems:
        raise ManifestError(
            "the manifest is malformed: " + "; ".join(problems),
            hint="fetch it again from the appliance's /api/v1 manifest endpoint",
        )
    return Manifest(**{name: fields[name] for name in SIGNED_FIELDS})


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{what} is missing", hint="fetch it again from the appliance")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError(
            f"{what} is not base64", hint="fetch it again from the appliance"
        ) from None


def _bad_signature(manifest: Manifest) -> ManifestError:
    return ManifestError(
        f"the signature of {manifest.component} {manifest.version} ({manifest.platform}) does "
        "not verify with the appliance's signing key",
        hint="do not run this build: it was not signed by the appliance this agent registered "
        "with (or was altered on the way)",
    )
