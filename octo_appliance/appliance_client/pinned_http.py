"""HTTPS to an appliance trusted by the SHA-256 thumbprint of its certificate (pinning).

Shared by ``octo-agent register`` and the ``octo-appliance`` commands that call a running
server. The appliance's certificate is usually self-signed, so no CA vouches for it; what the
operator has is the thumbprint the appliance prints at start. First a bare TLS handshake
(verification off, nothing sent) fetches the certificate the server presents, and its
thumbprint is compared with the pin; then requests go over an SSL context that trusts exactly
that certificate (host name not checked: the pin is the identity), so a server swapped between
the two connections fails the handshake instead of receiving an API key.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from octo_appliance.comms import normalize_thumbprint, thumbprint_of_der
from octo_appliance.comms.errors import IdentityError
from octo_appliance.exceptions import ConfigError, OctoError

TIMEOUT = 30.0


@dataclass(frozen=True)
class PinnedServer:
    """The appliance's HTTPS API: its base URL and the certificate it proved to have."""

    url: str
    host: str
    port: int
    thumbprint: str
    certificate_pem: str


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_server_url(url: str) -> tuple[str, str, int]:
    """``https://HOST[:PORT]`` as (normalised url, host, port); anything else is a ConfigError.

    The normalised url is rebuilt from host and port, so user info in the given one is dropped.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port or 443
    except ValueError:
        parts, port = None, 0
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or parts.path not in ("", "/")
    ):
        raise ConfigError(
            f"--server {url!r} is not an https://HOST:PORT address",
            hint="give the appliance's address as its banner prints it, e.g. "
            "https://octo.example.com:8443",
        )
    host = parts.hostname
    return f"https://{format_address(host, port)}", host, port


def parse_thumbprint(value: str) -> str:
    """64 lowercase hex digits, or a ConfigError naming ``--server-thumbprint``."""
    try:
        return normalize_thumbprint(value)
    except IdentityError as exc:
        raise ConfigError(
            f"--server-thumbprint: {exc.message}",
            hint="copy the thumbprint the appliance prints at start (64 hex digits)",
        ) from None


def pin_server(
    url: str,
    expected_thumbprint: str,
    *,
    timeout: float = TIMEOUT,
    error: type[OctoError] = OctoError,
) -> PinnedServer:
    """Fetch the certificate the server presents and check it against the pin.

    Failures to connect and a certificate that does not match raise ``error`` (the caller's
    own exception class); a malformed url or thumbprint raises ConfigError.
    """
    base, host, port = parse_server_url(url)
    expected = parse_thumbprint(expected_thumbprint)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to *read* the certificate; nothing is sent
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise error(
            f"cannot reach the appliance at {base}: {reason}",
            hint="check the --server address, that the appliance runs, and the firewall",
        ) from None
    if not der:
        raise error(f"{base} presented no certificate", hint="check the address")
    actual = thumbprint_of_der(der)
    if actual != expected:
        raise error(
            f"the server presented certificate {actual}, expected {expected}; "
            "the API key was not sent",
            hint="check --server-thumbprint against the appliance's banner; if they match, "
            "something else answers at that address",
        )
    return PinnedServer(base, host, port, actual, ssl.DER_cert_to_PEM_cert(der))


def pinned_ssl_context(server: PinnedServer) -> ssl.SSLContext:
    """A client context that trusts only the pinned certificate (and no CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=server.certificate_pem)
    return context
