"""Password hashing with scrypt, and the random tokens used for API keys and sessions.

Passwords are low-entropy, so they get a deliberately slow hash (scrypt). API keys and session
tokens are 256 random bits, so a single SHA-256 is enough and keeps every request fast.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from octo_appliance.types import REGISTRATION_TOKEN_PREFIX

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
API_KEY_PREFIX = "OCTO-"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    salt_text = base64.b64encode(salt).decode()
    digest_text = base64.b64encode(digest).decode()
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt_text}${digest_text}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt_b64),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def generate_api_key() -> str:
    """A new API key: ``OCTO-`` and 43 url-safe characters (256 bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def generate_registration_token() -> str:
    """A new registration token: ``OCTOREG-`` and 43 url-safe characters (256 bits)."""
    return REGISTRATION_TOKEN_PREFIX + secrets.token_urlsafe(32)


def generate_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
